"""Where a fast-path epoch's time goes: TensorFlow ops, oneDNN kernels, threads.

    PYTHONPATH=. python scripts/profile_fastpath.py --data-dir ../shared/data [--batches 40] [--out FILE]

Two fresh processes train the same ``--batches`` batches of the real 19997 training set (frozen GloVe 50d, the
blog network, the default trainer config) on the fast path, each after one warm-up pass over those batches
(graph tracing, oneDNN primitive creation):

1. under TensorFlow's profiler (``tf.profiler.experimental``); the trace's ``framework_op_stats`` table, as
   TensorBoard's profile plugin computes it from the same XSpace, gives the self time of each op type;
2. with ``ONEDNN_VERBOSE=1``: each oneDNN primitive execution is logged with its implementation (e.g.
   ``brg_conv_fwd:avx512_core``, the ISA it was compiled for) and its time, summed per primitive kind and
   implementation.

The machine's CPU model, vector extensions, load average and TensorFlow's thread pools go into the report.
Memory traffic is not measured: this VM exposes no hardware counters (``perf`` cannot read them here).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
MARK = "PROFILE: timed pass starts"
sys.path.insert(0, str(ROOT))


def train_batches(data_dir: str, batches: int, profile_dir: str | None) -> dict:
    """Warm up, then time (and optionally profile) one pass of the fast path over ``batches`` batches."""
    import tensorflow as tf

    from trainer import config as config_module
    from trainer import fastpath as fastpath_module
    from trainer import model as model_module
    from trainer import prepare as prepare_module
    from trainer import train as train_module

    config = config_module.TrainerConfig()
    data = prepare_module.prepare(config, data_home=data_dir)
    count = batches * config.batch_size
    x, y = data.x_train[:count], data.y_train[:count]
    train_module.seed_everything(config)
    model = model_module.build_model(config, matrix_rows=data.matrix_rows, embedding_matrix=data.embedding_matrix,
                                     num_classes=data.num_classes)
    fast = fastpath_module.FastPath(model, config.sequence_length)
    fast.train_epoch(x, y, config.batch_size)
    print(MARK, flush=True)
    if profile_dir:
        tf.profiler.experimental.start(profile_dir)
    started = time.perf_counter()
    fast.train_epoch(x, y, config.batch_size)
    seconds = time.perf_counter() - started
    if profile_dir:
        tf.profiler.experimental.stop()
    return {"seconds": seconds, "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")}


def op_stats(profile_dir: str) -> list[dict]:
    """Self time per TensorFlow op type from the trace, largest first (host ops: this is a CPU).

    ``framework_op_stats`` comes back as Google DataTable JSON (the format TensorBoard's profile plugin reads):
    one row per op, ``total_self_time`` in microseconds.
    """
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

    xspaces = glob.glob(os.path.join(profile_dir, "**", "*.xplane.pb"), recursive=True)
    data, _ = _pywrap_profiler_plugin.xspace_to_tools_data(xspaces, "framework_op_stats", {})
    by_type: dict[str, dict] = collections.defaultdict(lambda: {"self_us": 0.0, "occurrences": 0})
    for table in json.loads(data):
        columns = [column["id"] for column in table["cols"]]
        for row in table.get("rows", []):
            values = dict(zip(columns, (cell.get("v") if cell else None for cell in row["c"])))
            if values.get("host_or_device") != "Host" or values.get("type") == "IDLE":
                continue
            entry = by_type[values.get("type") or values.get("operation") or "?"]
            entry["self_us"] += float(values.get("total_self_time") or 0.0)
            entry["occurrences"] += int(values.get("occurrences") or 0)
    total = sum(entry["self_us"] for entry in by_type.values()) or 1.0
    return sorted(({"op": name, "self_seconds": round(entry["self_us"] / 1e6, 3),
                    "share": round(entry["self_us"] / total, 4), "occurrences": entry["occurrences"]}
                   for name, entry in by_type.items()), key=lambda row: -row["self_seconds"])


def onednn_kernels(verbose_lines: list[str]) -> list[dict]:
    """oneDNN executions summed per (primitive, implementation), from ``ONEDNN_VERBOSE=1`` lines.

    oneDNN 3.x prints ``onednn_verbose,<time stamp>,primitive,exec,cpu,<kind>,<impl>,<prop>,...,<ms>``.
    """
    by_kernel: dict[tuple[str, str, str], dict] = collections.defaultdict(lambda: {"ms": 0.0, "calls": 0})
    if MARK in verbose_lines:  # only the timed pass, not the warm-up's primitive creation
        verbose_lines = verbose_lines[verbose_lines.index(MARK) + 1:]
    for line in verbose_lines:
        fields = line.strip().split(",")
        if len(fields) < 8 or "exec" not in fields[:4]:
            continue
        start = fields.index("exec")
        kind, implementation, propagation = fields[start + 2], fields[start + 3], fields[start + 4]
        try:
            milliseconds = float(fields[-1])
        except ValueError:
            continue
        entry = by_kernel[(kind, implementation, propagation)]
        entry["ms"] += milliseconds
        entry["calls"] += 1
    return sorted(({"primitive": kind, "implementation": implementation, "propagation": propagation,
                    "seconds": round(entry["ms"] / 1e3, 3), "calls": entry["calls"]}
                   for (kind, implementation, propagation), entry in by_kernel.items()),
                  key=lambda row: -row["seconds"])


def child(args: argparse.Namespace) -> None:
    result = train_batches(args.data_dir, args.batches, args.profile_dir or None)
    print("RESULT " + json.dumps(result), flush=True)


def run_child(args: argparse.Namespace, *, profile_dir: str = "", environment: dict | None = None):
    command = [sys.executable, __file__, "--child", "--data-dir", args.data_dir, "--batches", str(args.batches),
               "--profile-dir", profile_dir]
    process = subprocess.run(command, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(environment or {})),
                             cwd=ROOT, capture_output=True, text=True)
    if process.returncode != 0:
        sys.exit(f"profile run failed:\n{process.stderr[-3000:]}")
    result = json.loads(next(line[7:] for line in process.stdout.splitlines() if line.startswith("RESULT ")))
    return result, process.stdout.splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--batches", type=int, default=40, help="Training batches of 128 per pass (default 40).")
    parser.add_argument("--out", default=None, help="Write the report as JSON here too.")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from trainer import machine

    report = {"batches": args.batches, "cpu": machine.cpu_description(),
              "load_average_before": [round(value, 2) for value in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="glovesweep-profile-") as profile_dir:
        report["plain"], _ = run_child(args)
        report["profiled"], _ = run_child(args, profile_dir=profile_dir)
        report["ops"] = op_stats(profile_dir)
    report["onednn_run"], lines = run_child(args, environment={"ONEDNN_VERBOSE": "1"})
    report["onednn"] = onednn_kernels(lines)
    report["onednn_total_seconds"] = round(sum(row["seconds"] for row in report["onednn"]), 3)
    report["load_average_after"] = [round(value, 2) for value in os.getloadavg()]
    print(json.dumps({key: report[key] for key in ("cpu", "load_average_before", "plain", "profiled")}, indent=1))
    print("top ops (self time):")
    for row in report["ops"][:15]:
        print(f"  {row['op']:<28} {row['self_seconds']:8.3f} s  {row['share']:6.1%}  x{row['occurrences']}")
    print(f"oneDNN kernels ({report['onednn_total_seconds']} s of {report['onednn_run']['seconds']:.2f} s):")
    for row in report["onednn"][:12]:
        print(f"  {row['primitive']:<14} {row['propagation']:<18} {row['implementation']:<48} {row['seconds']:8.3f} s"
              f"  x{row['calls']}")
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
