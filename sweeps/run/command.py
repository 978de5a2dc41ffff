"""``glovesweep run``: a sweep file run from this machine, or (``--sweep-from-env``, set by ``glovesweep
submit``) the validated sweep a submitted Ray job carries in its environment."""

from __future__ import annotations

import argparse

from sweeps.run import driver
from sweeps.run import job_entry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    driver.add_arguments(parser)


def main(args: argparse.Namespace) -> int:
    if args.sweep_from_env:
        return job_entry.run_submitted(args)
    return driver.main(args)
