"""``glovesweep plan SWEEP.yaml``: what a sweep will train and cost on this machine, before it runs.

It validates the file, prepares each distinct data set (through the cache, as ``run`` would), finds the trials
that would train identically (``sweeps.run.merging``), and estimates CPU hours from a short calibration: two
epochs of the sweep's own network on up to ``CALIBRATION_DOCUMENTS`` of its own documents, timed on the second
epoch (the first traces the graph), cached per CPU model, TensorFlow version and network shape.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import time
from typing import Any

from sweeps.run import merging
from sweeps import spec as spec_module
from trainer import paths

CALIBRATION_DOCUMENTS = 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_file", help="A sweep file, e.g. sweeps/study-cpu.yaml.")
    parser.add_argument("--smoke-test", action="store_true", help="Plan the file's smoke variant.")
    parser.add_argument("--data-dir", default=None, help="Data home (default: $GLOVESWEEP_DATA or ~/glovesweep_data).")
    parser.add_argument("--cache-dir", default=None, help="Cache home (default: $GLOVESWEEP_CACHE).")
    parser.add_argument("--no-download", action="store_true", help="Never download; a missing file is an error.")
    parser.add_argument("--recalibrate", action="store_true", help="Time the network again, ignoring the cache.")
    parser.add_argument("--json", action="store_true", help="Print the plan as JSON.")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the platform's processor string."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def seconds_per_document(config, prepared, *, cache_dir=None, recalibrate: bool = False) -> tuple[float, bool]:
    """Training seconds per document per epoch (validation included) of ``config``'s network; (value, cached)."""
    import tensorflow as tf

    from trainer import train as train_module

    shape = {"cpu": cpu_model(), "tensorflow": tf.__version__, "architecture": config.architecture,
             "sequence_length": config.sequence_length, "glove_dim": config.glove_dim,
             "embedding": config.embedding, "batch_size": config.batch_size,
             "compute": str(getattr(config, "compute_path", "keras"))}
    key = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]
    memo = paths.cache_home(cache_dir) / "calibration" / f"{key}.json"
    if memo.exists() and not recalibrate:
        return float(json.loads(memo.read_text())["seconds_per_document"]), True
    count = min(CALIBRATION_DOCUMENTS, len(prepared.x_train))
    subset = dataclasses.replace(prepared, x_train=prepared.x_train[:count], y_train=prepared.y_train[:count],
                                 x_val=prepared.x_val[:count // 4], y_val=prepared.y_val[:count // 4])
    history = train_module.train(config.replace(epochs=2), subset)
    value = history["epoch_seconds"][-1] / (count + count // 4)
    paths.atomic_write(memo, json.dumps({"seconds_per_document": value, **shape, "measured": time.time()}))
    return value, False


def make_plan(spec: spec_module.SweepSpec, *, data_home=None, cache_dir=None, download_if_missing=True,
              recalibrate: bool = False) -> dict[str, Any]:
    """The plan as a JSON-able dict (trials, merges, epochs to train, estimated hours)."""
    from sweeps.run import shared_data
    from trainer import data as data_module
    from trainer import prepare as prepare_module

    sources = shared_data.resolve_sources(spec, data_home=data_home, cache_dir=cache_dir,
                                          download_if_missing=download_if_missing)
    prepared: dict[str, Any] = {}
    digests: dict[str, str] = {}
    reader = data_module.ArchiveReader()
    for trial in spec.trials():
        config = spec.trial_config(trial)
        if trial.kind != "keras":
            continue
        key = sources.data_key(config)
        if key not in prepared:
            prepared[key] = prepare_module.prepare(config, data_home=data_home, cache_dir=cache_dir,
                                                   download_if_missing=download_if_missing, reader=reader)
        digests[config.digest()] = merging.content_digest(prepared[key])
    plan = merging.plan_trials(spec, digests)
    networks = [trial for trial in plan.train if trial.kind == "keras"]
    cpu_seconds, cached = 0.0, True
    for trial in networks:
        config = spec.trial_config(trial)
        data = prepared[sources.data_key(config)]
        per_document, hit = seconds_per_document(config, data, cache_dir=cache_dir, recalibrate=recalibrate)
        cached = cached and hit
        cpu_seconds += config.epochs * (len(data.x_train) + len(data.x_val)) * per_document * spec.resources["cpu"]
    return {
        "sweep": spec.name, "trials": spec.total_trials, "networks": sum(1 for t in spec.trials() if t.kind == "keras"),
        "baselines": sum(1 for t in spec.trials() if t.kind == "baseline"), "to_train": len(networks),
        "merged": [{"trial": member.label, "seed": member.seed, "shares": primary.label} for member, primary in
                   plan.merged],
        "epochs_to_train": sum(spec.trial_config(trial).epochs for trial in networks),
        "cpu_seconds": round(cpu_seconds, 1), "cpu_hours": round(cpu_seconds / 3600, 3),
        "calibration_cached": cached, "cpu": cpu_model(),
    }


def main(args: argparse.Namespace) -> int:
    spec = spec_module.load_sweep(args.sweep_file, smoke_test=args.smoke_test)
    plan = make_plan(spec, data_home=args.data_dir, cache_dir=args.cache_dir,
                     download_if_missing=not args.no_download, recalibrate=args.recalibrate)
    if args.json:
        print(json.dumps(plan, indent=1))
        return 0
    print(f"sweep {plan['sweep']!r}: {plan['trials']} trials ({plan['networks']} networks, {plan['baselines']} "
          f"TF-IDF baselines); {plan['to_train']} networks to train, {plan['epochs_to_train']} epochs")
    for item in plan["merged"]:
        print(f"  merged: {item['trial']} seed={item['seed']} trains identically to {item['shares']}: shares its "
              f"result")
    slots = max(1, math.floor((os.cpu_count() or 1) / spec.resources["cpu"]))
    print(f"estimated {plan['cpu_hours']:.2f} CPU hours on this machine ({plan['cpu']}; calibration "
          f"{'cached' if plan['calibration_cached'] else 'measured now'}), about "
          f"{plan['cpu_hours'] / spec.resources['cpu'] / min(slots, spec.max_concurrent_trials or slots):.2f} h of "
          f"wall time with {min(slots, spec.max_concurrent_trials or slots)} trial(s) at once")
    return 0
