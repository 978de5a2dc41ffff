"""The ``glovesweep`` command line.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``main(args) -> int`` (or in an
object of a module that holds several, ``module:object``); the table below maps names to them, imported only
when the subcommand runs (``--help`` stays fast).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import sys

from sweeps import console

COMMANDS = {
    "train": ("sweeps.cli_train", "Run one training trial locally and print one line per epoch."),
    "run": ("sweeps.run.command", "Run a sweep file on Ray Tune, logging every trial to MLflow."),
    "resume": ("sweeps.run.driver_resume", "Continue a sweep whose driver died, finishing only what is missing."),
    "ui": ("sweeps.ui", "Open the MLflow UI on the sweep's tracking store."),
    "plan": ("sweeps.run.plan", "Show what a sweep will train (merging identical cells) and its estimated CPU hours."),
    "report": ("sweeps.report.make", "Tabulate a sweep's runs and attribute the accuracy gap to its factors."),
    "submit": ("sweeps.service.commands:SUBMIT", "Submit a sweep file as a Ray job to a running cluster's job server."),
    "status": ("sweeps.service.status_list:STATUS", "Show a submitted sweep's progress, or one line per sweep on the cluster."),
    "list": ("sweeps.service.status_list:LIST", "One line per sweep submitted to the cluster (as 'status' without an id)."),
    "logs": ("sweeps.service.commands:LOGS", "Print (or --follow) a submitted sweep's driver output."),
    "cancel": ("sweeps.service.commands:CANCEL", "Stop a submitted sweep: its driver, trials and actors; runs end KILLED."),
}

# The exit code of a command stopped by Ctrl-C, as a shell reports one (128 + SIGINT).
INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit 2) that names the fix."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def implementation(name: str):
    """The module (or ``module:object``) that implements subcommand ``name``."""
    module_name, _, attribute = COMMANDS[name][0].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


def build_parser(only: str | None = None, argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = OneLineParser(prog="glovesweep", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="Log at INFO level.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == only:
            add_arguments = implementation(name).add_arguments
            # A command whose flags depend on the command line (train: the --trainer's factors) gets it.
            if "argv" in inspect.signature(add_arguments).parameters:
                add_arguments(subparser, argv=argv or [])
            else:
                add_arguments(subparser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = bool({"-v", "--verbose"} & set(argv))
    # TensorFlow's C++ chatter (CUDA probing, CPU flags) hides the lines users need; -v shows all of it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")
    # MLflow logs INFO lines (creating a store's tables...) on stderr, where only our one line belongs.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    command = next((word for word in argv if word in COMMANDS), None)
    args = build_parser(command, argv).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # When MLflow was imported before the variable.
    module = implementation(args.command)
    try:
        return int(module.main(args) or 0)
    except (ValueError, OSError) as error:
        if args.verbose:
            logging.getLogger(__name__).exception("glovesweep %s failed", args.command)
        print(f"glovesweep {args.command}: error: {console.one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - a bug, not a user error: one line unless -v asks for more
        if args.verbose:
            raise
        print(f"glovesweep {args.command}: unexpected error: {type(error).__name__}: {console.one_line(error)} "
              f"(rerun as glovesweep -v {args.command} ... for the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C (or SIGTERM, which a sweep's driver turns into Ctrl-C) before Tune took over its own stop.
        if args.verbose:
            raise
        print(f"glovesweep {args.command}: stopped", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
