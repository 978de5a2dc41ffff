"""The ``glovesweep`` command line.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``main(args) -> int``; the
table below maps names to modules, imported only when the subcommand runs (``--help`` stays fast).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

COMMANDS = {
    "train": ("sweeps.cli_train", "Run one training trial locally and print one line per epoch."),
    "run": ("sweeps.driver", "Run a sweep file on Ray Tune, logging every trial to MLflow."),
    "resume": ("sweeps.driver_resume", "Continue a sweep whose driver died, finishing only what is missing."),
    "ui": ("sweeps.ui", "Open the MLflow UI on the sweep's tracking store."),
    "plan": ("sweeps.plan", "Show what a sweep will train (merging identical cells) and its estimated CPU hours."),
    "report": ("sweeps.report", "Tabulate a sweep's runs and attribute the accuracy gap to its factors."),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glovesweep", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="Log at INFO level.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == only:
            importlib.import_module(module_name).add_arguments(subparser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # TensorFlow's C++ start-up chatter (CUDA probing, CPU flags) hides the lines users need.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = next((word for word in argv if word in COMMANDS), None)
    args = build_parser(command).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.main(args) or 0)
    except (ValueError, OSError) as error:
        print(f"glovesweep {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
