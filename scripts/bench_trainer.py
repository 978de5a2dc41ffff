"""Benchmark ``train()`` against the plain 2017 Keras example, side by side, with the FLOP floors.

    python scripts/bench_trainer.py --data-dir ../shared/data [--epochs 2] [--rounds 3] [--out docs/benchmarks/trainer.json]
    python scripts/bench_trainer.py --dataset bydate --strip sklearn_all --embedding trainable --rounds 3 \
        --out docs/benchmarks/trainer-trainable.json   # a trainable epoch, keras path against fast path

Every measurement runs in its own subprocess, one after another (never two at once on this 2-core machine):
1. start-up: ``prepare()`` + model build with a cold cache, then again warm; also wall time from process
   start (Python + TensorFlow import) to ready;
2. ``--rounds`` rounds of, interleaved A B C A B C ...: A ``scripts/reference_keras_2017.py``, B ``train()``
   with ``compute_path="keras"``, C ``train()`` with ``compute_path="fast"``, each for ``--epochs`` epochs on
   the same arrays; a run's epoch time is the median over epochs 2..N (epoch 1 traces the graph). The
   ratios are taken within a round (the machine is shared, so only side-by-side ratios are trusted) and
   the report gives their median. With ``--embedding trainable`` or ``random`` the rounds are B C only: the
   2017 script is the frozen network;
3. float32 matmul peak on this CPU and the model's analytic FLOPs -> the epoch's FLOP floor, for the dense
   work (every padded window) and for the work actually needed (windows that touch a real token); frozen
   embedding only (the counts assume no embedding gradient).

The load average is recorded before every round: on a shared machine it says how far a round can be trusted.
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

from trainer import machine

ROOT = pathlib.Path(__file__).resolve().parents[1]


def conv_flops_per_sample(sequence_length: int, dim: int, classes: int = 20) -> tuple[float, float]:
    """Analytic (training, inference) FLOPs per sample of the blog network with a frozen embedding, dense.

    Training = forward + backward; the backward pass of a layer costs 2x its forward (input and weight
    gradients) except the first conv, whose input (the frozen embedding) needs no gradient: 1x.
    """
    steps = sequence_length
    windows = []
    for stage in range(3):
        steps = steps - 4
        windows.append(steps)
        if stage < 2:
            steps //= 5
    return window_flops(windows, dim, classes)


def window_flops(windows, dim: int, classes: int = 20) -> tuple[float, float]:
    """(training, inference) FLOPs of one sample whose three Conv1D(128, 5) stages compute ``windows`` outputs."""
    layers = [2.0 * count * 128 * 5 * channels for count, channels in zip(windows, (dim, 128, 128))]
    dense = 2.0 * 128 * 128 + 2.0 * 128 * classes
    forward = sum(layers) + dense
    backward = layers[0] + 2.0 * (sum(layers[1:]) + dense)
    return forward + backward, forward


def real_windows(token_ids) -> "np.ndarray":
    """Per document, the conv outputs of each stage whose receptive field touches a real (non-padding) token.

    Parameters
    ----------
    token_ids : np.ndarray of int, shape (documents, 1000), pre-padded

    Returns
    -------
    np.ndarray of int64, shape (documents, 3)
        Conv1, conv2 and conv3 outputs, counting only those the next pooling reads (995, 195, 35 at most);
        the rest are the constant prefix, computed once per step.
    """
    import numpy as np

    from trainer import tiers as tiers_module

    geometry = tiers_module.Geometry(token_ids.shape[1])
    padding = tiers_module.leading_padding(token_ids)
    # Conv1 output i reads tokens i..i+4; pool1 reads outputs 0..5 * pool1 - 1.
    conv1 = np.clip(5 * geometry.pool1 - np.maximum(padding - 4, 0), 0, None)
    constant_pool1 = np.maximum((padding - 4) // 5, 0)
    conv2 = np.clip(5 * geometry.pool2 - np.maximum(constant_pool1 - 4, 0), 0, None)
    constant_pool2 = np.maximum((constant_pool1 - 4) // 5, 0)
    conv3 = np.clip(geometry.steps - np.maximum(constant_pool2 - 4, 0), 0, None)
    return np.stack([conv1, conv2, conv3], axis=1)


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

    config = config_module.TrainerConfig(dataset=args.dataset, strip=args.strip, embedding=args.embedding,
                                         epochs=args.epochs, compute_path=args.compute_path)
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
    elif args.worker == "arrays":
        import numpy as np

        data = prepare_module.prepare(config, data_home=args.data_dir, cache_dir=args.cache_dir)
        if data.embedding_matrix is not None:  # the 2017 script's input (frozen GloVe rows)
            np.savez(args.save_arrays, x_train=data.x_train, y_train=data.y_train, x_val=data.x_val,
                     y_val=data.y_val, embedding_matrix=data.embedding_matrix)
        windows = real_windows(data.x_train)
        train_flops = sum(window_flops(row, config.glove_dim)[0] for row in windows.tolist())
        inference_flops = sum(window_flops(row, config.glove_dim)[1] for row in real_windows(data.x_val).tolist())
        # Token windows the fast path's conv1 runs, as a fraction of the dense ones, over epoch 1's batches.
        from trainer import fastpath as fastpath_module
        from trainer import tiers as tiers_module

        geometry = tiers_module.Geometry(config.sequence_length)
        padding = tiers_module.leading_padding(data.x_train[train_module.epoch_order(config, 1, len(data.x_train))])
        run_tokens = sum(len(members) * (config.sequence_length - 5 * constant)
                         for start in range(0, len(padding), config.batch_size)
                         for members, constant in tiers_module.plan_tiers(
                             padding[start:start + config.batch_size], geometry, fastpath_module.DEFAULT_TIERS))
        result = {"num_train": len(data.x_train), "num_val": len(data.x_val),
                  "fast_path_token_fraction": run_tokens / (len(padding) * config.sequence_length),
                  "real_epoch_flops": train_flops + inference_flops,
                  "real_tokens_mean": float((data.x_train != 0).sum(axis=1).mean()),
                  "real_windows_mean": windows.mean(axis=0).tolist()}
    elif args.worker == "train":
        data = prepare_module.prepare(config, data_home=args.data_dir, cache_dir=args.cache_dir)
        history = train_module.train(config, data)
        result = {"epoch_seconds": history["epoch_seconds"], "val_acc": history["val_acc"],
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


def wait_for_idle(threshold: float, *, timeout: float = 300.0) -> None:
    """Sleep until the 1-minute load average is under ``threshold`` (the previous round's own load decays too)."""
    deadline = time.monotonic() + timeout
    while os.getloadavg()[0] >= threshold and time.monotonic() < deadline:
        time.sleep(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--dataset", default="19997")
    parser.add_argument("--strip", default="none", help="Header stripping (trainer config 'strip').")
    parser.add_argument("--embedding", default="frozen", choices=("frozen", "trainable", "random"),
                        help="Embedding mode; trainable and random compare the keras and fast paths only.")
    parser.add_argument("--epochs", type=int, default=2, help="Epochs per run; a run's time is the median of 2..N.")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved rounds of reference, keras, fast.")
    parser.add_argument("--out", default=None, help="Write the results as JSON here too.")
    parser.add_argument("--idle-below", type=float, default=None,
                        help="Before each round wait (up to 5 min) until the 1-minute load average is below this.")
    parser.add_argument("--worker", choices=("startup", "arrays", "train", "peak"), help=argparse.SUPPRESS)
    parser.add_argument("--compute-path", default="fast", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    parser.add_argument("--save-arrays", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    me = [sys.executable, __file__, "--data-dir", args.data_dir, "--dataset", args.dataset, "--strip", args.strip,
          "--embedding", args.embedding, "--epochs", str(args.epochs)]
    frozen = args.embedding == "frozen"
    report: dict = {"dataset": args.dataset, "strip": args.strip, "embedding": args.embedding, "epochs": args.epochs,
                    "rounds": args.rounds, "cpu": machine.cpu_description(), "load_average_before_round": []}
    runs: dict[str, list] = {"reference_2017": [], "keras": [], "fast": []} if frozen else {"keras": [], "fast": []}
    with tempfile.TemporaryDirectory() as scratch:
        cache = os.path.join(scratch, "cache")
        cold, _ = run(*me, "--worker", "startup", "--cache-dir", cache)
        warm, _ = run(*me, "--worker", "startup", "--cache-dir", cache)
        assert not cold["cache_hit"] and warm["cache_hit"], (cold, warm)
        report["startup"] = {"cold": cold, "warm": warm}
        arrays = os.path.join(scratch, "arrays.npz")
        work, _ = run(*me, "--worker", "arrays", "--cache-dir", cache, "--save-arrays", arrays)
        for round_index in range(args.rounds):
            if args.idle_below is not None:
                wait_for_idle(args.idle_below)
            report["load_average_before_round"].append([round(value, 2) for value in os.getloadavg()])
            if frozen:
                reference, _ = run(sys.executable, str(ROOT / "scripts" / "reference_keras_2017.py"), arrays,
                                   str(args.epochs))
                runs["reference_2017"].append({"epoch_seconds": [entry["epoch_seconds"] for entry in reference],
                                               "val_acc": [entry["val_acc"] for entry in reference]})
            for path in ("keras", "fast"):
                result, _ = run(*me, "--worker", "train", "--cache-dir", cache, "--compute-path", path)
                runs[path].append(result)
            seconds = {name: statistics.median(values[-1]["epoch_seconds"][1:]) for name, values in runs.items()}
            print(f"round {round_index + 1}: epoch seconds " + ", ".join(f"{name} {value:.1f}"
                                                                          for name, value in seconds.items())
                  + f" (load average before: {report['load_average_before_round'][-1]})", flush=True)
        peak, _ = run(*me, "--worker", "peak") if frozen else (None, 0.0)

    epoch = {name: [statistics.median(entry["epoch_seconds"][1:]) for entry in entries]
             for name, entries in runs.items()}
    if not frozen:
        ratios = {"fast_vs_keras": [f / k for f, k in zip(epoch["fast"], epoch["keras"])]}
        report.update(runs=runs, epoch_seconds_per_round=epoch, ratios_per_round=ratios,
                      median_ratio={name: statistics.median(values) for name, values in ratios.items()},
                      median_epoch_seconds={name: statistics.median(values) for name, values in epoch.items()},
                      work={key: value for key, value in work.items() if key != "real_epoch_flops"},
                      peak_rss_gb={name: max(entry["peak_rss_bytes"] for entry in runs[name]) / 1e9
                                  for name in ("keras", "fast")})
        print(f"per-round ratio fast / keras path ({args.embedding} embedding): "
              f"{', '.join(f'{value:.3f}' for value in ratios['fast_vs_keras'])} -> median "
              f"{report['median_ratio']['fast_vs_keras']:.3f} (goal <= 0.5)")
        if args.out:
            pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            pathlib.Path(args.out).write_text(json.dumps(report, indent=1))
        return
    ratios = {
        "fast_vs_reference": [f / r for f, r in zip(epoch["fast"], epoch["reference_2017"])],
        "keras_vs_reference": [k / r for k, r in zip(epoch["keras"], epoch["reference_2017"])],
        "fast_vs_keras": [f / k for f, k in zip(epoch["fast"], epoch["keras"])],
    }
    train_flops, inference_flops = conv_flops_per_sample(1000, 50)
    dense_flops = work["num_train"] * train_flops + work["num_val"] * inference_flops
    peak_flops = peak["matmul_flops"]
    fast_median = statistics.median(epoch["fast"])
    report.update(
        runs=runs, epoch_seconds_per_round=epoch, ratios_per_round=ratios,
        median_ratio={name: statistics.median(values) for name, values in ratios.items()},
        ratio_vs_reference=statistics.median(ratios["fast_vs_reference"]),
        median_epoch_seconds={name: statistics.median(values) for name, values in epoch.items()},
        work=work,
        matmul_peak_gflops=peak_flops / 1e9,
        train_mflop_per_sample=train_flops / 1e6,
        flop_floor_seconds={"dense": dense_flops / peak_flops, "real_windows": work["real_epoch_flops"] / peak_flops},
        fast_vs_flop_floor={"dense": fast_median / (dense_flops / peak_flops),
                             "real_windows": fast_median / (work["real_epoch_flops"] / peak_flops)},
        peak_rss_gb={name: max(entry["peak_rss_bytes"] for entry in runs[name]) / 1e9 for name in ("keras", "fast")},
    )
    print(f"per-round ratio fast / 2017 script: {', '.join(f'{value:.3f}' for value in ratios['fast_vs_reference'])}"
          f" -> median {report['ratio_vs_reference']:.3f} (goal <= 0.6)")
    print(f"per-round ratio keras path / 2017 script: "
          f"{', '.join(f'{value:.3f}' for value in ratios['keras_vs_reference'])}")
    floors = report["flop_floor_seconds"]
    print(f"FLOP floor at {report['matmul_peak_gflops']:.1f} GFLOP/s matmul peak: dense {floors['dense']:.2f} s/epoch, "
          f"real windows {floors['real_windows']:.2f} s/epoch; fast path median {fast_median:.2f} s")
    print(f"start-up: cold {cold['startup_seconds']:.2f} s, warm {warm['startup_seconds']:.2f} s; process start to "
          f"ready, warm: {warm['since_process_start']:.2f} s; peak RSS {report['peak_rss_gb']}")
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
