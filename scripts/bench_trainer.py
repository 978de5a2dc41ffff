"""Benchmark ``train()`` against the plain 2017 Keras example, the FLOP floor, start-up time and memory.

    python scripts/bench_trainer.py --data-dir ../shared/data [--epochs 4] [--out docs/benchmarks/trainer.json]

Every measurement runs in its own subprocess, one after another (never two at once on this 2-core machine):
1. start-up: ``prepare()`` + model build with a cold cache, then again warm; also wall time from process
   start (Python + TensorFlow import) to the first batch;
2. ``train()`` for ``--epochs`` epochs: median epoch seconds over epochs 2..N (epoch 1 traces the graph),
   peak RSS of the process;
3. ``scripts/reference_keras_2017.py`` on the same arrays (saved from the same ``prepare()``): median epoch;
4. float32 matmul peak on this CPU and the model's analytic FLOPs -> the epoch's FLOP floor.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def conv_flops_per_sample(sequence_length: int, dim: int, classes: int = 20) -> tuple[float, float]:
    """Analytic (training, inference) FLOPs per sample of the blog network with a frozen embedding.

    Training = forward + backward; the backward pass of a layer costs 2x its forward (input and weight
    gradients) except the first conv, whose input (the frozen embedding) needs no gradient: 1x.
    """
    steps = sequence_length
    layers = []
    channels = dim
    for stage in range(3):
        steps = steps - 4
        layers.append(2.0 * steps * 128 * 5 * channels)
        channels = 128
        if stage < 2:
            steps //= 5
    dense = 2.0 * 128 * 128 + 2.0 * 128 * classes
    forward = sum(layers) + dense
    backward = layers[0] + 2.0 * (sum(layers[1:]) + dense)
    return forward + backward, forward


def matmul_peak_flops(size: int = 2048, repeats: int = 10) -> float:
    """Best float32 matmul throughput (FLOP/s) seen over ``repeats`` runs of an n x n product in TensorFlow."""
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    tf.linalg.matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - started)
    return 2.0 * size**3 / best


def worker(args: argparse.Namespace) -> None:
    """One measurement in this process; prints one JSON line."""
    process_started = float(os.environ["BENCH_PROCESS_STARTED"])
    from trainer import config as config_module
    from trainer import model as model_module
    from trainer import prepare as prepare_module
    from trainer import train as train_module

    config = config_module.TrainerConfig(dataset=args.dataset, epochs=args.epochs)
    result: dict = {}
    if args.worker == "startup":
        started = time.perf_counter()
        data = prepare_module.prepare(config, data_home=args.data_dir, cache_dir=args.cache_dir)
        prepared = time.perf_counter()
        train_module.seed_everything(config)
        model_module.build_model(config, matrix_rows=data.matrix_rows, embedding_matrix=data.embedding_matrix,
                                 num_classes=data.num_classes)
        result = {"prepare_seconds": prepared - started, "startup_seconds": time.perf_counter() - started,
                  "cache_hit": data.stats["cache_hit"], "since_process_start": time.time() - process_started}
    elif args.worker == "train":
        data = prepare_module.prepare(config, data_home=args.data_dir, cache_dir=args.cache_dir)
        if args.save_arrays:
            import numpy as np

            np.savez(args.save_arrays, x_train=data.x_train, y_train=data.y_train, x_val=data.x_val,
                     y_val=data.y_val, embedding_matrix=data.embedding_matrix)
        first_batch = {}

        def on_epoch(epoch, metrics, state):
            first_batch.setdefault("seconds", time.time() - process_started)

        history = train_module.train(config, data, on_epoch=on_epoch)
        result = {"epoch_seconds": history["epoch_seconds"], "val_acc": history["val_acc"],
                  "num_train": data.stats["num_train"], "num_val": data.stats["num_val"],
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    elif args.worker == "peak":
        result = {"matmul_flops": matmul_peak_flops()}
    print("RESULT " + json.dumps(result), flush=True)


def run(*command: str, env_extra: dict | None = None) -> tuple[dict | list, float]:
    env = dict(os.environ, BENCH_PROCESS_STARTED=str(time.time()), TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
    started = time.perf_counter()
    completed = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"benchmark step failed: {' '.join(command)}\n{completed.stderr[-4000:]}")
    lines = completed.stdout.splitlines()
    results = [json.loads(line[7:]) for line in lines if line.startswith("RESULT ")]
    if results:
        return results[-1], seconds
    return [json.loads(line) for line in lines if line.startswith("{")], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--dataset", default="19997")
    parser.add_argument("--epochs", type=int, default=4, help="Epochs per side; the median uses epochs 2..N.")
    parser.add_argument("--out", default=None, help="Write the results as JSON here too.")
    parser.add_argument("--worker", choices=("startup", "train", "peak"), help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    parser.add_argument("--save-arrays", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    me = [sys.executable, __file__, "--data-dir", args.data_dir, "--dataset", args.dataset, "--epochs",
          str(args.epochs)]
    report: dict = {"dataset": args.dataset, "epochs": args.epochs}
    with tempfile.TemporaryDirectory() as scratch:
        cache = os.path.join(scratch, "cache")
        cold, _ = run(*me, "--worker", "startup", "--cache-dir", cache)
        warm, _ = run(*me, "--worker", "startup", "--cache-dir", cache)
        assert not cold["cache_hit"] and warm["cache_hit"], (cold, warm)
        report["startup"] = {"cold": cold, "warm": warm}
        arrays = os.path.join(scratch, "arrays.npz")
        ours, _ = run(*me, "--worker", "train", "--cache-dir", cache, "--save-arrays", arrays)
        reference_epochs, _ = run(sys.executable, str(ROOT / "scripts" / "reference_keras_2017.py"), arrays,
                                  str(args.epochs))
        peak, _ = run(*me, "--worker", "peak")

    ours_median = statistics.median(ours["epoch_seconds"][1:])
    reference_median = statistics.median(entry["epoch_seconds"] for entry in reference_epochs[1:])
    train_flops, inference_flops = conv_flops_per_sample(1000, 50)
    floor = (ours["num_train"] * train_flops + ours["num_val"] * inference_flops) / peak["matmul_flops"]
    report.update(
        train=ours, reference={"epoch_seconds": [entry["epoch_seconds"] for entry in reference_epochs],
                               "val_acc": [entry["val_acc"] for entry in reference_epochs]},
        median_epoch_seconds={"train": ours_median, "reference_2017": reference_median},
        ratio_vs_reference=ours_median / reference_median,
        matmul_peak_gflops=peak["matmul_flops"] / 1e9,
        train_mflop_per_sample=train_flops / 1e6,
        flop_floor_seconds=floor,
        ratio_vs_flop_floor=ours_median / floor,
        peak_rss_gb=ours["peak_rss_bytes"] / 1e9,
    )
    print(f"epoch (median of epochs 2..{args.epochs}): train() {ours_median:.2f} s, 2017 script "
          f"{reference_median:.2f} s -> ratio {report['ratio_vs_reference']:.3f} (goal <= 1.0)")
    print(f"FLOP floor: {train_flops / 1e6:.0f} MFLOP/train sample, matmul peak "
          f"{report['matmul_peak_gflops']:.1f} GFLOP/s -> floor {floor:.2f} s/epoch; train() at "
          f"{report['ratio_vs_flop_floor']:.2f}x the floor (goal <= 1.3x)")
    print(f"start-up: cold {cold['startup_seconds']:.2f} s, warm {warm['startup_seconds']:.2f} s (goal <= 2 s); "
          f"process start to ready, warm: {warm['since_process_start']:.2f} s (Python + TensorFlow import)")
    print(f"peak RSS of train(): {report['peak_rss_gb']:.2f} GB (goal <= 2.5 GB)")
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
