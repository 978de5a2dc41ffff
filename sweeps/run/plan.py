"""``glovesweep plan SWEEP.yaml``: what a sweep will train and cost on this machine, before it runs.

It validates the file, prepares each distinct data set (through the cache, as ``run`` would), finds the trials
that would train identically (``sweeps.run.merging``), and estimates CPU hours from a short calibration
(``sweeps.run.calibration``): two epochs of the sweep's own network on up to ``CALIBRATION_DOCUMENTS`` of its own
documents, timed on the second epoch (the first traces the graph), cached per CPU model, TensorFlow version and
network shape. A search's plan (``sweeps.run.plan_search``) adds its scheduler's expected epochs, the range its
searched factors give the cost, and where its budget stops it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sweeps import console
from sweeps import spec as spec_module
from sweeps.run import calibration
from sweeps.run import merging
from sweeps.run import plan_search


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_file", help="A sweep file, e.g. sweeps/study-cpu.yaml.")
    parser.add_argument("--smoke-test", action="store_true", help="Plan the file's smoke variant.")
    parser.add_argument("--data-dir", default=None, help="Data home (default: $GLOVESWEEP_DATA or ~/glovesweep_data).")
    parser.add_argument("--cache-dir", default=None, help="Cache home (default: $GLOVESWEEP_CACHE).")
    parser.add_argument("--no-download", action="store_true",
                        help="Accepted for scripts: a plan never downloads (a missing file is named, not fetched).")
    parser.add_argument("--recalibrate", action="store_true", help="Time the network again, ignoring the cache.")
    parser.add_argument("--json", action="store_true", help="Print the plan as JSON.")


def make_plan(spec: spec_module.SweepSpec, *, data_home=None, cache_dir=None,
              recalibrate: bool = False) -> dict[str, Any]:
    """The plan as a JSON-able dict (trials, merges, epochs to train, estimated hours); nothing is downloaded.

    A file the sweep needs but this machine lacks is listed under ``missing``; the trials it shapes are timed
    on stand-in arrays and ``unchecked`` counts them (their merges are unknown: they count as trained).
    """
    data_sets = calibration.DataSets(data_home=data_home, cache_dir=cache_dir)
    keys: dict[str, str] = {}  # TrainerConfig.digest() -> data set key
    for trial in spec.trials():
        if not spec.trainer_of(trial).prepares_data:
            continue
        config = spec.trial_config(trial)
        keys[config.digest()] = data_sets.key_of(config)
        data_sets.of(config)
    prepared = data_sets.prepared
    digests = {digest: prepared[key].content_digest for digest, key in keys.items() if prepared[key].content_digest}
    plan = merging.plan_trials(spec, digests)
    networks = [trial for trial in plan.train if spec.trainer_of(trial).prepares_data]
    cpu_seconds, cached = 0.0, True
    for trial in networks:
        config = spec.trial_config(trial)
        data = prepared[keys[config.digest()]]
        per_document, hit = calibration.seconds_per_document(config, data.calibration, cpus=spec.resources["cpu"],
                                                             cache_dir=cache_dir, recalibrate=recalibrate)
        cached = cached and hit
        cpu_seconds += config.epochs * data.documents * per_document * spec.resources["cpu"]
    unchecked = sum(1 for trial in spec.trials() if spec.trainer_of(trial).prepares_data
                    and not prepared[keys[spec.trial_config(trial).digest()]].content_digest)
    return {
        "sweep": spec.name, "trials": spec.total_trials,
        "networks": sum(1 for t in spec.trials() if not spec.trainer_of(t).reference),
        "baselines": sum(1 for t in spec.trials() if spec.trainer_of(t).reference), "to_train": len(networks),
        "merged": [{"trial": member.label, "seed": member.seed, "shares": primary.label} for member, primary in
                   plan.merged],
        "epochs_to_train": sum(spec.trial_config(trial).epochs for trial in networks),
        "cpu_seconds": round(cpu_seconds, 1), "cpu_hours": round(cpu_seconds / 3600, 3),
        "calibration_cached": cached, "cpu": calibration.cpu_model(),
        "missing": sorted(data_sets.missing), "unchecked": unchecked,
    }


def user_trainer_plan(spec: spec_module.SweepSpec) -> dict[str, Any]:
    """The plan of a sweep of a user's trainer: trials and epochs; no time estimate (only the built-in network is
    calibrated here)."""
    trials = spec.trials()
    return {"sweep": spec.name, "trainer": spec.trainer, "trials": len(trials), "networks": len(trials),
            "baselines": 0, "to_train": len(trials), "merged": [], "epochs_to_train": len(trials) * spec.max_epochs,
            "cpu_seconds": None, "cpu_hours": None, "calibration_cached": False, "cpu": calibration.cpu_model(),
            "missing": [], "unchecked": 0}


def main(args: argparse.Namespace) -> int:
    spec = spec_module.load_sweep(args.sweep_file, smoke_test=args.smoke_test)
    if spec.searched:
        # Suggested as it runs: its scheduler's expected epochs, and for the Keras network a cost range.
        options = {"data_home": getattr(args, "data_dir", None), "cache_dir": getattr(args, "cache_dir", None),
                   "recalibrate": getattr(args, "recalibrate", False)}
        # The calibration imports TensorFlow, whose C++ start-up lines only the descriptor can hold back.
        with console.native_stderr_held(enabled=not getattr(args, "verbose", False)):
            plan = plan_search.make_search_plan(spec, **options)
        print(json.dumps(plan.to_json(), indent=1) if args.json else "\n".join(plan.lines(args.sweep_file)))
        return 0
    if not spec.main_trainer.prepares_data:
        plan = user_trainer_plan(spec)
        print(json.dumps(plan, indent=1) if args.json else
              f"sweep {plan['sweep']!r}: {plan['trials']} trials of trainer {spec.trainer!r}, "
              f"{plan['epochs_to_train']} epochs in all; no time estimate for a trainer of your own: time one trial "
              f"with 'glovesweep run {args.sweep_file} --smoke-test'")
        return 0
    with console.native_stderr_held(enabled=not getattr(args, "verbose", False)):
        plan = make_plan(spec, data_home=args.data_dir, cache_dir=args.cache_dir, recalibrate=args.recalibrate)
    if args.json:
        print(json.dumps(plan, indent=1))
        return 0
    print(f"sweep {plan['sweep']!r}: {plan['trials']} trials ({plan['networks']} networks, {plan['baselines']} "
          f"TF-IDF baselines); {plan['to_train']} networks to train, {plan['epochs_to_train']} epochs")
    for item in plan["merged"]:
        print(f"  merged: {item['trial']} seed={item['seed']} trains identically to {item['shares']}: shares its "
              f"result")
    if plan["unchecked"]:
        print(f"merges not checked for {plan['unchecked']} network trial(s), counted as trained: "
              f"{', '.join(plan['missing'])} not on this machine (a plan never downloads; 'glovesweep run' fetches "
              f"them, or give --data-dir)")
    slots = plan_search.concurrent_trials(spec)
    print(f"estimated {plan['cpu_hours']:.2f} CPU hours on this machine ({plan['cpu']}; calibration "
          f"{'cached' if plan['calibration_cached'] else 'measured now'}), about "
          f"{plan['cpu_hours'] / spec.resources['cpu'] / slots:.2f} h of wall time with {slots} trial(s) at once")
    return 0
