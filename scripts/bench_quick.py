"""README command 1 against one full-data 19997 epoch of the blog network, measured side by side (issue 11).

    python scripts/bench_quick.py --data-dir ../shared/data [--rounds 3] [--out docs/benchmarks/quick.json]
    python scripts/bench_quick.py --data-dir ../shared/data --smoke     # CI: one tiny round, checks the plumbing

Each round, in this order, every command a fresh process:

1. ``glovesweep train --dataset 19997 --epochs 2`` (the trainer's default fast path, two threads): the
   reference epoch is epoch 2 as the command prints it (epoch 1 also traces the graph);
2. the same with ``--compute-path keras``: the blog network under plain ``model.fit``, as the blog ran it;
3. README command 1, ``glovesweep run sweeps/quick.yaml`` with ``GLOVESWEEP_DATA`` set, from an empty folder
   with an empty preprocessing cache (what a fresh clone meets): the seconds until the answer is printed and
   until the command returns (Ray shut down).

Each round also records when command 1 printed each step's first line (``timeline``: data prepared, first epoch,
first trial done, every trial done, the answer) and the CPU-seconds the whole machine was busy meanwhile (Ray's
processes included): busy CPU-seconds over the cores is the floor of the command's wall on an idle machine.

The ratios are taken round by round (the machine's speed drifts between rounds, not within one) and their
medians reported, with the CPU model, its vector extensions and the load average. ``--smoke`` runs one round
of the same three commands on tiny settings (``--smoke-test``, 5 posts per group) so CI checks that the
script still runs; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from trainer import machine

ROOT = pathlib.Path(__file__).resolve().parents[1]

EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+): .*\((\d+(?:\.\d+)?) s\)$", re.MULTILINE)
ANSWER_LINE = "glovesweep: the answer:"
# Where README command 1's seconds go: the first line of each step, timed as it is printed.
MILESTONES = {
    "data_prepared": re.compile(r"^glovesweep: prepared \d+ data set"),
    "first_epoch": re.compile(r": epoch 1 val_acc"),
    "first_trial_done": re.compile(r"seed=\d+: done$"),
    "trials_done": re.compile(r"^glovesweep: \d+/\d+ trials done"),
    "answer": re.compile(r"^glovesweep: the answer:"),
}
SMOKE_TRAIN = ["--documents-per-group", "5", "--architecture", "global_max", "--max-sequence-length", "160"]


def glovesweep(*args: str) -> list[str]:
    """The installed ``glovesweep`` next to this interpreter (the venv's), as a command line."""
    return [str(pathlib.Path(sys.executable).with_name("glovesweep")), *args]


def reference_epoch(data_dir: str, cache_dir: str, *, compute_path: str, smoke: bool) -> float:
    """Seconds of epoch 2 of ``glovesweep train --dataset 19997 --epochs 2`` on ``compute_path``."""
    command = glovesweep("train", "--dataset", "19997", "--epochs", "2", "--compute-path", compute_path,
                         "--data-dir", data_dir, "--cache-dir", cache_dir, "--no-download",
                         *(SMOKE_TRAIN if smoke else []))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    epochs = {int(match.group(1)): float(match.group(3)) for match in EPOCH_LINE.finditer(result.stdout)}
    if result.returncode != 0 or 2 not in epochs:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return epochs[2]


def readme_command_1(data_dir: str, *, smoke: bool) -> dict:
    """Run ``glovesweep run sweeps/quick.yaml`` as README command 1 does, from an empty folder and cache."""
    with tempfile.TemporaryDirectory(prefix="bench-quick-") as folder:
        folder = pathlib.Path(folder)
        # The sweep file's relative paths (mlflow.db, glovesweep_results) land in the empty folder.
        shutil.copytree(ROOT / "sweeps", folder / "sweeps")
        env = dict(os.environ, GLOVESWEEP_DATA=data_dir, GLOVESWEEP_CACHE=str(folder / "cache"))
        command = glovesweep("run", "sweeps/quick.yaml", *(["--smoke-test"] if smoke else []))
        busy_before = machine_busy_seconds()
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        answer_seconds, lines, timeline = None, [], {}
        for line in process.stdout:
            lines.append(line)
            now = round(time.perf_counter() - started, 2)
            for milestone, pattern in MILESTONES.items():
                if milestone not in timeline and pattern.search(line):
                    timeline[milestone] = now
            if answer_seconds is None and line.startswith(ANSWER_LINE):
                answer_seconds = time.perf_counter() - started
        code = process.wait()
        seconds = time.perf_counter() - started
        busy = machine_busy_seconds() - busy_before
        text = "".join(lines)
        if code != 0 or answer_seconds is None:
            raise RuntimeError(f"README command 1 failed ({code}):\n{text[-3000:]}")
        done = re.search(r"glovesweep: (\d+)/(\d+) trials done, (\d+) failed in (\d+) s", text)
        return {"seconds": round(seconds, 2), "answer_seconds": round(answer_seconds, 2),
                "sweep_seconds": int(done.group(4)) if done else None,
                "busy_cpu_seconds": round(busy, 1) if busy is not None else None,
                "busy_cores": round(busy / seconds, 2) if busy is not None else None,
                "timeline": timeline}


def machine_busy_seconds() -> float | None:
    """CPU-seconds every core of the machine has spent busy since boot (``/proc/stat``: all but idle and iowait),
    so that the difference over a command counts its Ray processes too; None off Linux."""
    try:
        fields = [int(value) for value in pathlib.Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def ratio(seconds: float, epoch_seconds: float) -> float | None:
    """``seconds`` in reference epochs; None when the epoch printed as 0.0 s (tiny smoke data)."""
    return round(seconds / epoch_seconds, 2) if epoch_seconds > 0 else None


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"), help="Data home with the archives.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of the three commands (medians reported).")
    parser.add_argument("--smoke", action="store_true", help="One round on tiny settings (checks the script runs).")
    parser.add_argument("--out", default=None, help="Also write the figures as JSON to this file.")
    args = parser.parse_args(argv)
    data_dir = str(pathlib.Path(args.data_dir).resolve())
    rounds = []
    with tempfile.TemporaryDirectory(prefix="bench-quick-cache-") as cache_dir:
        for number in range(1, (1 if args.smoke else args.rounds) + 1):
            load_before = load_average()
            fast = reference_epoch(data_dir, cache_dir, compute_path="fast", smoke=args.smoke)
            keras = reference_epoch(data_dir, cache_dir, compute_path="keras", smoke=args.smoke)
            command = readme_command_1(data_dir, smoke=args.smoke)
            row = {"round": number, "fast_epoch_seconds": fast, "keras_epoch_seconds": keras, **command,
                   "ratio_to_fast_epoch": ratio(command["seconds"], fast),
                   "ratio_to_keras_epoch": ratio(command["seconds"], keras),
                   "answer_ratio_to_fast_epoch": ratio(command["answer_seconds"], fast),
                   "load_average_before": load_before}
            rounds.append(row)
            print(json.dumps(row), flush=True)

    def median(key: str) -> float | None:
        values = [row[key] for row in rounds if row[key] is not None]
        return round(statistics.median(values), 2) if values else None

    result = {"smoke": args.smoke, "cpu": machine.cpu_description(), "rounds": rounds,
              "median": {key: median(key) for key in ("fast_epoch_seconds", "keras_epoch_seconds", "seconds",
                                                      "answer_seconds", "ratio_to_fast_epoch",
                                                      "ratio_to_keras_epoch", "answer_ratio_to_fast_epoch",
                                                      "busy_cpu_seconds", "busy_cores")},
              "target_ratio": 4.0}
    print(json.dumps(result["median"]), flush=True)
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
