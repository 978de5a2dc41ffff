"""Benchmark the sweep service against bare ``train()`` runs on the same data.

Run: .venv/bin/python scripts/bench_sweep.py [--data-dir ../shared/data] [--documents-per-group 0] [--repeats 2]

A small study (19997 x {none, blank_line}, 1 seed, epochs {2, 4}, sequences of 200 tokens) measured three ways:

1. epoch axis: ``glovesweep run`` of the study (one trial per cell trains 4 epochs and answers both 2 and 4)
   against the naive loop of separate runs, ``glovesweep train`` once per cell and epoch count; both as
   commands from a fresh process (goal: sweep <= 0.7 x naive wall time);
2. overhead: the sweep's wall time (Ray already up) against the sum of its own trials run bare,
   ``prepare()`` + ``train()`` in one process (what Ray, MLflow, checkpoints and worker start-up add;
   goal <= 5 %), split into the time inside the trials' MLflow runs and the fixed start-up around them;
3. the preprocessing cache: the sweep with an empty cache (cold) and again with the entries in place (warm).

Ray starts once up front for the in-process sweeps (its start-up is reported apart). Measurements alternate
``--repeats`` times and medians are reported, because other work on the machine moves single timings.
Everything lives in a temporary folder (MLflow sqlite store, Ray storage, cache). ``--json`` also writes the
numbers to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

SWEEP = """\
# Run: python scripts/bench_sweep.py
name: bench
factors:
  dataset: ["19997"]
  strip: [none, blank_line]
  epochs: [2, 4]
fixed:
  architecture: global_max
  max_sequence_length: {sequence_length}
  documents_per_group: {documents_per_group}
  sizing: num_words_plus_one
seeds: 1
resources: {{cpu: {cpus}, gpu: 0}}
max_concurrent_trials: 1
mlflow: {{tracking_uri: "sqlite:///{folder}/mlflow.db", experiment: bench}}
storage_path: {folder}/results
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"), help="Data home with the archives.")
    parser.add_argument("--documents-per-group", type=int, default=0, help="0: the whole 19997 set.")
    parser.add_argument("--sequence-length", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2, help="Warm sweep + bare loop pairs (medians reported).")
    parser.add_argument("--json", default=None, help="Also write the numbers to this JSON file.")
    args = parser.parse_args()

    import mlflow
    import ray

    from sweeps.run import driver
    from sweeps.tracking import names
    from sweeps import spec as spec_module
    from sweeps.tracking import mlflow_runs

    folder = pathlib.Path(tempfile.mkdtemp(prefix="glovesweep-bench-"))
    cache = folder / "cache"
    os.environ["GLOVESWEEP_CACHE"] = str(cache)  # Bare runs and Ray workers share the (initially empty) cache.
    cpus = os.cpu_count() or 1
    sweep_file = folder / "bench.yaml"
    sweep_file.write_text(SWEEP.format(sequence_length=args.sequence_length, folder=folder, cpus=cpus,
                                       documents_per_group=args.documents_per_group))
    spec = spec_module.load_sweep(sweep_file)
    data_home = str(pathlib.Path(args.data_dir).resolve())
    load_before = os.getloadavg()

    started = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - started

    def sweep(label: str) -> dict[str, float]:
        began = time.perf_counter()
        result = driver.run_sweep(spec, data_home=data_home, cache_dir=str(cache), download_if_missing=False,
                                  experiment_name=f"bench-{label}")
        wall = time.perf_counter() - began
        assert result.ok, result
        runs = mlflow_runs.child_runs(result.tracking_uri, result.experiment_id, result.parent_run_id)
        client = mlflow.MlflowClient(tracking_uri=result.tracking_uri)
        epoch_seconds = [metric.value for run in runs
                         for metric in client.get_metric_history(run.info.run_id, names.EPOCH_SECONDS)]
        trial_seconds = sum((run.info.end_time - run.info.start_time) / 1000 for run in runs)
        return {"wall": wall, "prepare": result.prepare_seconds, "trials": trial_seconds,
                "epoch": statistics.median(epoch_seconds)}

    from trainer import prepare as prepare_module
    from trainer import train as train_module

    def bare_trials() -> dict[str, float]:
        """Every trial of the sweep (4 epochs) run bare in this process (warm cache, TensorFlow imported)."""
        seconds, epoch_seconds = 0.0, []
        for trial in spec.trials():
            config = spec.trial_config(trial)
            began = time.perf_counter()
            prepared = prepare_module.prepare(config, data_home=data_home, cache_dir=str(cache),
                                              download_if_missing=False)
            history = train_module.train(config, prepared)
            seconds += time.perf_counter() - began
            epoch_seconds += history["epoch_seconds"]
        return {"four": seconds, "epoch": statistics.median(epoch_seconds)}

    environment = dict(os.environ)
    environment.pop("RAY_ADDRESS", None)
    common = ["--data-dir", data_home, "--cache-dir", str(cache), "--no-download"]

    def command_seconds(arguments: list[str]) -> float:
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sweeps.cli", *arguments], check=True, env=environment, cwd=folder,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - began

    def commands() -> dict[str, float]:
        """`glovesweep run` of the study against `glovesweep train` once per cell and epoch count."""
        sweep_seconds = command_seconds(["run", str(sweep_file), "--num-cpus", str(cpus), *common])
        naive = 0.0
        for trial in spec.trials():
            config = spec.trial_config(trial)
            for epochs in spec.epochs:
                naive += command_seconds(["train", "--dataset", config.dataset, "--strip", config.strip,
                                          "--epochs", str(epochs), "--architecture", config.architecture,
                                          "--max-sequence-length", str(config.max_sequence_length),
                                          "--documents-per-group", str(config.documents_per_group),
                                          "--sizing", config.sizing, "--seed", str(config.seed), *common])
        return {"sweep": sweep_seconds, "naive": naive}

    cold = sweep("cold")
    warm, bare, command = [], [], []
    for repeat in range(args.repeats):
        warm.append(sweep(f"warm-{repeat}"))
        bare.append(bare_trials())
        command.append(commands())
        print(f"repeat {repeat}: warm sweep {warm[-1]['wall']:.1f} s, its trials bare {bare[-1]['four']:.1f} s; "
              f"glovesweep run {command[-1]['sweep']:.1f} s, glovesweep train loop {command[-1]['naive']:.1f} s",
              flush=True)
    ray.shutdown()

    def median(rows, key):
        return statistics.median(row[key] for row in rows)

    numbers = {
        "ray_start_seconds": ray_start,
        "sweep_cold_seconds": cold["wall"], "sweep_cold_prepare_seconds": cold["prepare"],
        "sweep_warm_seconds": median(warm, "wall"), "sweep_warm_prepare_seconds": median(warm, "prepare"),
        "sweep_warm_trial_run_seconds": median(warm, "trials"),
        "bare_trials_seconds": median(bare, "four"),
        "sweep_command_seconds": median(command, "sweep"), "naive_loop_seconds": median(command, "naive"),
        "sweep_epoch_seconds": median(warm, "epoch"), "bare_epoch_seconds": median(bare, "epoch"),
        "warm_sweeps": [row["wall"] for row in warm], "bare_trials": [row["four"] for row in bare],
        "sweep_commands": [row["sweep"] for row in command], "naive_loops": [row["naive"] for row in command],
        "load_average_before": load_before[0], "load_average_after": os.getloadavg()[0],
    }
    numbers["epoch_axis_ratio"] = numbers["sweep_command_seconds"] / numbers["naive_loop_seconds"]
    numbers["overhead_fraction"] = numbers["sweep_warm_seconds"] / numbers["bare_trials_seconds"] - 1.0
    numbers["trial_overhead_fraction"] = numbers["sweep_warm_trial_run_seconds"] / numbers["bare_trials_seconds"] - 1
    numbers["fixed_seconds"] = numbers["sweep_warm_seconds"] - numbers["sweep_warm_trial_run_seconds"]
    numbers["warm_over_cold"] = numbers["sweep_warm_seconds"] / numbers["sweep_cold_seconds"]

    rows = [
        ("Ray start (once, outside the sweeps)", f"{ray_start:.1f} s", ""),
        (f"sweep, cold cache (prepare {cold['prepare']:.1f} s)", f"{cold['wall']:.1f} s", ""),
        (f"sweep, warm cache (prepare {numbers['sweep_warm_prepare_seconds']:.1f} s)",
         f"{numbers['sweep_warm_seconds']:.1f} s", "< cold"),
        ("  inside the trials' MLflow runs / fixed start-up around them",
         f"{numbers['sweep_warm_trial_run_seconds']:.1f} s / {numbers['fixed_seconds']:.1f} s", ""),
        ("the sweep's trials run bare (4 epochs per cell)", f"{numbers['bare_trials_seconds']:.1f} s", ""),
        ("median epoch, sweep trial / bare run",
         f"{numbers['sweep_epoch_seconds']:.2f} s / {numbers['bare_epoch_seconds']:.2f} s", ""),
        ("`glovesweep run` command (own Ray, warm cache)", f"{numbers['sweep_command_seconds']:.1f} s", ""),
        ("naive loop: `glovesweep train` per cell and epoch count", f"{numbers['naive_loop_seconds']:.1f} s", ""),
        ("epoch axis: glovesweep run / naive loop", f"{numbers['epoch_axis_ratio']:.2f}", "<= 0.70"),
        ("overhead: warm sweep / bare trials - 1", f"{100 * numbers['overhead_fraction']:.1f} %", "<= 5 %"),
        ("  inside the trials only: trial runs / bare trials - 1",
         f"{100 * numbers['trial_overhead_fraction']:.1f} %", ""),
        ("cache: warm sweep / cold sweep", f"{numbers['warm_over_cold']:.2f}", "< 1"),
    ]
    print(f"\nglovesweep sweep benchmark: {len(spec.trials())} trials (19997 x {{none, blank_line}}, epochs {{2, 4}}, "
          f"max_sequence_length {args.sequence_length}, documents_per_group {args.documents_per_group}), {cpus} CPUs, "
          f"medians of {args.repeats}, load average {load_before[0]:.1f} -> {numbers['load_average_after']:.1f}")
    print("| measure | seconds / ratio | goal |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(numbers, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
