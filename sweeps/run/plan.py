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
# Documents of each public archive (http://qwone.com/~jason/20Newsgroups/: 19997 and 18828 in one set,
# bydate 11314 train + 7532 test), for a plan whose archive is not on this machine.
PUBLISHED_DOCUMENTS = {"19997": 19997, "18828": 18828, "bydate": 18846}
PUBLISHED_TRAIN_DOCUMENTS = {"bydate": 11314}
GROUPS = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_file", help="A sweep file, e.g. sweeps/study-cpu.yaml.")
    parser.add_argument("--smoke-test", action="store_true", help="Plan the file's smoke variant.")
    parser.add_argument("--data-dir", default=None, help="Data home (default: $GLOVESWEEP_DATA or ~/glovesweep_data).")
    parser.add_argument("--cache-dir", default=None, help="Cache home (default: $GLOVESWEEP_CACHE).")
    parser.add_argument("--no-download", action="store_true",
                        help="Accepted for scripts: a plan never downloads (a missing file is named, not fetched).")
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


@dataclasses.dataclass(frozen=True)
class DataSet:
    """What the estimate of one data set needs: arrays to time the network on, and how many documents an
    epoch reads (train plus validation); ``content_digest`` is empty for a stand-in (its merges are unchecked)."""

    calibration: Any
    documents: int
    content_digest: str


def published_documents(config) -> int:
    """Documents an epoch reads (train plus validation) when the archive is not here: the published count."""
    if config.dataset == "bydate" and config.validation == "split":
        total = PUBLISHED_TRAIN_DOCUMENTS["bydate"]
    else:
        total = PUBLISHED_DOCUMENTS[config.dataset]
    if config.documents_per_group:
        total = min(total, GROUPS * config.documents_per_group * (2 if config.dataset == "bydate" else 1))
    return total


def stand_in(config, prepared=None):
    """A ``Prepared`` of ``config``'s shape for timing only: ``prepared``'s token ids (built without GloVe) with
    zero vectors, or random token ids when the archive is missing too."""
    import numpy as np

    from trainer import data as data_module
    from trainer import prepare as prepare_module

    glove_rows = None
    if prepared is not None:
        if config.embedding != "random":
            glove_rows = np.zeros((prepared.matrix_rows, config.glove_dim), dtype=np.float32)
        return dataclasses.replace(prepared, embedding_matrix=glove_rows)
    rows = config.num_words + 1
    generator = np.random.default_rng(0)
    count = CALIBRATION_DOCUMENTS + CALIBRATION_DOCUMENTS // 4
    tokens = generator.integers(1, rows, size=(count, config.sequence_length), dtype=np.int32)
    labels = generator.integers(0, GROUPS, size=count).astype(np.int64)
    if config.embedding != "random":
        glove_rows = np.zeros((rows, config.glove_dim), dtype=np.float32)
    return prepare_module.Prepared(x_train=tokens[:CALIBRATION_DOCUMENTS], y_train=labels[:CALIBRATION_DOCUMENTS],
                                   x_val=tokens[CALIBRATION_DOCUMENTS:], y_val=labels[CALIBRATION_DOCUMENTS:],
                                   embedding_matrix=glove_rows, matrix_rows=rows,
                                   label_names=list(data_module.NEWSGROUPS), stats={})


def make_plan(spec: spec_module.SweepSpec, *, data_home=None, cache_dir=None,
              recalibrate: bool = False) -> dict[str, Any]:
    """The plan as a JSON-able dict (trials, merges, epochs to train, estimated hours); nothing is downloaded.

    A file the sweep needs but this machine lacks is listed under ``missing``; the trials it shapes are timed
    on stand-in arrays and ``unchecked`` counts them (their merges are unknown: they count as trained).
    """
    from sweeps.run import shared_data
    from trainer import data as data_module
    from trainer import embeddings as embeddings_module
    from trainer import prepare as prepare_module

    archives: dict[tuple[str, str], tuple[str, str]] = {}
    glove: dict[tuple[int, str], str] = {}
    missing: dict[str, str] = {}  # file -> the trainer's reason

    def found(config) -> bool:
        """Resolve (never download) the archive and GloVe of ``config``; False when one is not here."""
        key = (config.dataset, config.data_path)
        if key not in archives:
            try:
                source = data_module.resolve_dataset(config.dataset, data_path=config.data_path,
                                                     data_home=data_home, download_if_missing=False)
                archives[key] = (str(source), data_module.source_sha256(source))
            except OSError as error:
                name = config.data_path or data_module.ARCHIVES[config.dataset].filename
                missing.setdefault(name, str(error))
                archives[key] = ("", "")
        glove_key = (config.glove_dim, config.glove_path)
        if config.embedding != "random" and glove_key not in glove:
            try:
                glove[glove_key] = embeddings_module.load_glove(
                    config.glove_dim, glove_path=config.glove_path, data_home=data_home, cache_dir=cache_dir,
                    download_if_missing=False).sha256
            except OSError as error:
                name = config.glove_path or f"{embeddings_module.GLOVE_URL.rsplit('/', 1)[-1]} ({config.glove_dim}d)"
                missing.setdefault(name, str(error))
                glove[glove_key] = ""
        return bool(archives[key][1]) and (config.embedding == "random" or bool(glove[glove_key]))

    data_sets: dict[str, DataSet] = {}
    keys: dict[str, str] = {}  # TrainerConfig.digest() -> data set key
    reader = data_module.ArchiveReader()
    for trial in spec.trials():
        if not spec.trainer_of(trial).prepares_data:
            continue
        config = spec.trial_config(trial)
        complete = found(config)
        archive_here = bool(archives[(config.dataset, config.data_path)][1])
        sources = shared_data.Sources(archives=archives, glove=glove)
        if complete:
            key = sources.data_key(config)
        elif archive_here:
            key = (f"without-glove:{sources.data_key(config.replace(embedding='random'))}:{config.embedding}:"
                   f"{config.glove_dim}")
        else:
            key = "stand-in:" + config.digest()
        keys[config.digest()] = key
        if key in data_sets:
            continue
        if archive_here:
            prepared = prepare_module.prepare(config if complete else config.replace(embedding="random"),
                                              data_home=data_home, cache_dir=cache_dir, download_if_missing=False,
                                              reader=reader)
            data_sets[key] = DataSet(prepared if complete else stand_in(config, prepared),
                                     len(prepared.x_train) + len(prepared.x_val),
                                     merging.content_digest(prepared) if complete else "")
        else:
            data_sets[key] = DataSet(stand_in(config), published_documents(config), "")
    digests = {digest: data_sets[key].content_digest for digest, key in keys.items()
               if data_sets[key].content_digest}
    plan = merging.plan_trials(spec, digests)
    networks = [trial for trial in plan.train if spec.trainer_of(trial).prepares_data]
    cpu_seconds, cached = 0.0, True
    for trial in networks:
        config = spec.trial_config(trial)
        data = data_sets[keys[config.digest()]]
        per_document, hit = seconds_per_document(config, data.calibration, cache_dir=cache_dir,
                                                 recalibrate=recalibrate)
        cached = cached and hit
        cpu_seconds += config.epochs * data.documents * per_document * spec.resources["cpu"]
    unchecked = sum(1 for trial in spec.trials() if spec.trainer_of(trial).prepares_data
                    and not data_sets[keys[spec.trial_config(trial).digest()]].content_digest)
    return {
        "sweep": spec.name, "trials": spec.total_trials, "networks": sum(1 for t in spec.trials() if not spec.trainer_of(t).reference),
        "baselines": sum(1 for t in spec.trials() if spec.trainer_of(t).reference), "to_train": len(networks),
        "merged": [{"trial": member.label, "seed": member.seed, "shares": primary.label} for member, primary in
                   plan.merged],
        "epochs_to_train": sum(spec.trial_config(trial).epochs for trial in networks),
        "cpu_seconds": round(cpu_seconds, 1), "cpu_hours": round(cpu_seconds / 3600, 3),
        "calibration_cached": cached, "cpu": cpu_model(),
        "missing": sorted(missing), "unchecked": unchecked,
    }


def user_trainer_plan(spec: spec_module.SweepSpec) -> dict[str, Any]:
    """The plan of a sweep of a user's trainer: trials and epochs; no time estimate (only the built-in network is
    calibrated here)."""
    trials = spec.trials()
    return {"sweep": spec.name, "trainer": spec.trainer, "trials": len(trials), "networks": len(trials),
            "baselines": 0, "to_train": len(trials), "merged": [], "epochs_to_train": len(trials) * spec.max_epochs,
            "cpu_seconds": None, "cpu_hours": None, "calibration_cached": False, "cpu": cpu_model(), "missing": [],
            "unchecked": 0}


def main(args: argparse.Namespace) -> int:
    spec = spec_module.load_sweep(args.sweep_file, smoke_test=args.smoke_test)
    if spec.searched:
        # Suggested as it runs: the count is an upper bound (budget, scheduler); no time estimate of a search yet.
        # With seeds: k a trial is a configuration training k seeds side by side: k times the epochs, one slot.
        # Its stages (confirm, final) add a fixed number of trials of one seed each, each to the last epoch.
        seeds = spec.seeds_side_by_side
        networks = spec.total_trials * seeds + spec.stage_trials
        plan = dict(user_trainer_plan(spec), trials=spec.total_trials + spec.stage_trials, networks=networks,
                    to_train=networks, epochs_to_train=networks * spec.max_epochs, seeds_per_trial=seeds,
                    search_trials=spec.total_trials, stage_trials=spec.stage_trials)
        side_by_side = f" x {seeds} seeds side by side (one trial's CPUs train all {seeds})" if seeds > 1 else ""
        stages_text = f" ({spec.total_trials} searched{side_by_side} + {spec.stage_trials} in its confirm and final " \
                      f"stages)" if spec.stage_trials else side_by_side
        print(json.dumps(plan, indent=1) if args.json else
              f"search {plan['sweep']!r}: up to {plan['trials']} trials{stages_text} of trainer {spec.trainer!r}, at "
              f"most {plan['epochs_to_train']} epochs in all{' (the scheduler stops some early)' if spec.scheduler else ''}"
              f"; no time estimate of a search yet: time one trial with 'glovesweep run {args.sweep_file} "
              f"--smoke-test'")
        return 0
    if not spec.main_trainer.prepares_data:
        plan = user_trainer_plan(spec)
        print(json.dumps(plan, indent=1) if args.json else
              f"sweep {plan['sweep']!r}: {plan['trials']} trials of trainer {spec.trainer!r}, "
              f"{plan['epochs_to_train']} epochs in all; no time estimate for a trainer of your own: time one trial "
              f"with 'glovesweep run {args.sweep_file} --smoke-test'")
        return 0
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
    slots = max(1, math.floor((os.cpu_count() or 1) / spec.resources["cpu"]))
    print(f"estimated {plan['cpu_hours']:.2f} CPU hours on this machine ({plan['cpu']}; calibration "
          f"{'cached' if plan['calibration_cached'] else 'measured now'}), about "
          f"{plan['cpu_hours'] / spec.resources['cpu'] / min(slots, spec.max_concurrent_trials or slots):.2f} h of "
          f"wall time with {min(slots, spec.max_concurrent_trials or slots)} trial(s) at once")
    return 0
