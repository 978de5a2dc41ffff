"""Add the label-leak fractions to a committed report's runs.parquet, computed from the real archives.

    python scripts/add_leak_fractions.py docs/results/study-cpu --data-dir ../shared/data

The committed study ran before trials logged ``leak_fraction_train`` / ``leak_fraction_val``. Both depend only on
the split (dataset, stripping, validation mode, seed where the split uses it, documents per group), so they are
computed here exactly as a trial computes them (``trainer.split.make_split``) for every row whose values are
missing, and written back; the report is then regenerated with ``glovesweep report <folder> --out <folder>``.
"""

from __future__ import annotations

import argparse
import math
import sys

from sweeps.report import reader as runs_module
from trainer import config as config_module
from trainer import split as split_module

SPLIT_FIELDS = config_module.factor_names("split")


def split_config(row: dict) -> config_module.TrainerConfig:
    """The config of a run's split, from its params as the runs frame holds them (text)."""
    values = {}
    for name in SPLIT_FIELDS:
        value = row.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        factor = config_module.FACTORS[name]
        if factor.type is bool:
            value = str(value).lower() == "true"
        elif factor.type in (int, float):
            value = factor.type(value)
        values[name] = value
    return config_module.TrainerConfig(architecture="global_max", max_sequence_length=1000, **values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="A report folder holding runs.parquet and history.parquet.")
    parser.add_argument("--data-dir", required=True, help="Data home with the archives.")
    args = parser.parse_args(argv)
    swept = runs_module.read_runs(args.folder)
    frame = swept.runs
    cache: dict[str, tuple[float, float]] = {}
    for index, row in frame.iterrows():
        if not math.isnan(row.get("leak_fraction_val", math.nan)):
            continue
        config = split_config(row.to_dict())
        key = config.digest(*SPLIT_FIELDS)
        if key not in cache:
            split = split_module.make_split(config, data_home=args.data_dir, download_if_missing=False)
            cache[key] = (split.leak_fraction_train, split.leak_fraction_val)
            print(f"{config.dataset} strip={config.strip} seed={config.seed}: train {cache[key][0]:.4f}, "
                  f"val {cache[key][1]:.4f}", flush=True)
        frame.loc[index, ["leak_fraction_train", "leak_fraction_val"]] = cache[key]
    runs_module.write_frames(swept, args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
