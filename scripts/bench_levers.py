"""Measure the fast path's levers side by side: length tiers per batch, oneDNN, intra-op threads.

    python scripts/bench_levers.py --data-dir ../shared/data [--batches 30] [--rounds 3] [--out FILE]

Each variant trains ``--batches`` batches of the real 19997 training set (after one warm-up epoch of the
same batches, which traces and builds the kernels) in its own subprocess; variants run one after another,
interleaved round by round (A B C ... A B C ...), and the report gives each variant's median ratio to the
first variant of the same round, so the load of a shared machine cancels out.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

# name -> (environment, fast-path tiers or 0 for the Keras path, intra-op threads or 0 for TensorFlow's
# default, trials run at once, mixed_bfloat16 policy)
VARIANTS = {
    "keras_path": ({}, 0, 0, 1, False),
    "fast_tiers4": ({}, 4, 0, 1, False),
    "fast_tiers1": ({}, 1, 0, 1, False),
    "fast_tiers2": ({}, 2, 0, 1, False),
    "fast_tiers8": ({}, 8, 0, 1, False),
    "fast_tiers4_onednn_off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, 4, 0, 1, False),
    "fast_tiers4_one_thread": ({}, 4, 1, 1, False),
    # Two trials at once, one thread each: the time per trial is the pair's mean over 2 (throughput).
    "fast_tiers4_two_trials_one_thread": ({}, 4, 1, 2, False),
    "keras_path_bfloat16": ({}, 0, 0, 1, True),
    # oneDNN keeps 1,024 compiled primitives by default; tiers of varying shapes may evict and recompile.
    "fast_tiers4_primitive_cache_16k": ({"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16384"}, 4, 0, 1, False),
    "fast_tiers8_primitive_cache_16k": ({"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16384"}, 8, 0, 1, False),
}


def worker(args: argparse.Namespace) -> None:
    """Time one variant in this process; prints one JSON line."""
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from trainer import config as config_module
    from trainer import fastpath as fastpath_module
    from trainer import model as model_module
    from trainer import prepare as prepare_module
    from trainer import train as train_module

    config = config_module.TrainerConfig()
    if args.bfloat16:
        import keras

        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    data = prepare_module.prepare(config, data_home=args.data_dir)
    count = args.batches * config.batch_size
    x, y = data.x_train[:count], data.y_train[:count]
    train_module.seed_everything(config)
    model = model_module.build_model(config, matrix_rows=data.matrix_rows, embedding_matrix=data.embedding_matrix,
                                     num_classes=data.num_classes)
    if args.tiers:
        fast = fastpath_module.FastPath(model, config.sequence_length, tiers=args.tiers)

        def run_epoch():
            fast.train_epoch(x, y, config.batch_size)
    else:
        def run_epoch():
            model.fit(x, y, batch_size=config.batch_size, epochs=1, shuffle=False, verbose=0)
    run_epoch()
    started = time.perf_counter()
    run_epoch()
    print("RESULT " + json.dumps({"seconds": time.perf_counter() - started}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="Comma-separated; the first is the baseline.")
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tiers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--bfloat16", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    names = args.variants.split(",")
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        for name in names:
            environment, tiers, threads, trials, bfloat16 = VARIANTS[name]
            command = [sys.executable, __file__, "--worker", "--data-dir", args.data_dir, "--batches",
                       str(args.batches), "--tiers", str(tiers), "--threads", str(threads)]
            command += ["--bfloat16"] if bfloat16 else []
            processes = [subprocess.Popen(command, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **environment),
                                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                         for _ in range(trials)]
            timings = []
            for process in processes:
                stdout, stderr = process.communicate()
                if process.returncode != 0:
                    sys.exit(f"variant {name} failed:\n{stderr[-3000:]}")
                timings.append(json.loads(next(line[7:] for line in stdout.splitlines()
                                               if line.startswith("RESULT ")))["seconds"])
            result = {"seconds": statistics.mean(timings) / trials}
            seconds[name].append(result["seconds"])
            print(f"round {round_index + 1} {name}: {result['seconds']:.2f} s", flush=True)
    baseline = names[0]
    report = {"batches": args.batches, "rounds": args.rounds, "seconds": seconds, "median_ratio_to_" + baseline: {
        name: statistics.median(value / base for value, base in zip(seconds[name], seconds[baseline]))
        for name in names}}
    print(json.dumps(report["median_ratio_to_" + baseline], indent=1))
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
