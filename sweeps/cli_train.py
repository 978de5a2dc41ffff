"""``glovesweep train``: one trial on this machine, one line per epoch, no Ray, no MLflow.

Every trainer flag comes from the trainer's declared factors (the Keras network's ``trainer.config.FACTORS``
by default; ``--trainer NAME`` for another): one flag per factor, its help, default and allowed values.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from sweeps import console
from sweeps.spec import schema
from sweeps.run import session as session_module
from sweeps.trainers import registry
from trainer import config as config_module
from trainer import factors as factors_module


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; use true or false")


def _optional(parse):
    def parse_optional(text: str):
        return None if text.lower() in ("", "none") else parse(text)

    parse_optional.__name__ = parse.__name__
    return parse_optional


def _flag_type(factor: factors_module.Factor):
    """The argparse type of a factor's flag; choices stay strings, checked by the config (one message)."""
    parse = _parse_bool if factor.type is bool else factor.type
    return _optional(parse) if factor.optional else parse


def requested_trainer(argv: list[str]) -> str:
    """The ``--trainer`` value on the command line (the flags depend on it); ``keras`` when absent."""
    for index, word in enumerate(argv):
        if word == "--trainer" and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith("--trainer="):
            return word.partition("=")[2]
    return schema.DEFAULT_TRAINER


def add_arguments(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    name = requested_trainer(argv or [])
    parser.add_argument("--trainer", default=schema.DEFAULT_TRAINER,
                        help="An installed trainer's name or module:function in this folder (default: keras).")
    if name != schema.DEFAULT_TRAINER:
        try:
            declared = registry.load(name, folder=str(pathlib.Path.cwd())).factors
        except ValueError as error:
            parser.error(str(error))
        for factor in declared.values():
            add_factor_flag(parser, factor)
        return
    for factor in config_module.FACTORS.values():
        add_factor_flag(parser, factor)
    parser.add_argument("--data-dir", default=None, help="Data home (default: $GLOVESWEEP_DATA or ~/glovesweep_data).")
    parser.add_argument("--cache-dir", default=None, help="Cache home (default: $GLOVESWEEP_CACHE or ~/.cache/glovesweep).")
    parser.add_argument("--no-download", action="store_true", help="Fail instead of downloading missing files.")
    parser.add_argument("--json", default=None, help="Also write the history as JSON to this file.")


def add_factor_flag(parser: argparse.ArgumentParser, factor: factors_module.Factor) -> None:
    """One ``--name-with-dashes`` flag with the factor's help, default and allowed values."""
    help_text = f"{factor.help} (default: {factor.default})"
    if factor.choices:
        help_text += f" {{{', '.join(map(str, factor.choices))}}}"
    elif factor.type is bool:
        help_text += " {true, false}"
    elif factor.bounds_text():
        help_text += f" [{factor.bounds_text()}]"
    parser.add_argument("--" + factor.name.replace("_", "-"), dest=factor.name, type=_flag_type(factor),
                        default=factor.default, help=help_text)


def run_user_trainer(args: argparse.Namespace) -> int:
    """A user's trainer called once, here: each report printed as one line (no Ray session, no MLflow run)."""
    trainer = registry.load(args.trainer, folder=str(pathlib.Path.cwd()))
    config = trainer.make_config({name: getattr(args, name) for name in trainer.factors})
    epochs = getattr(config, "epochs", None)

    def print_report(metrics: dict) -> None:
        print_report.epoch += 1
        shown = " ".join(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
                         for key, value in metrics.items())
        print(f"epoch {print_report.epoch}{f'/{epochs}' if epochs else ''}: {shown}", flush=True)

    print_report.epoch = 0
    with session_module.local_tune_session(print_report):
        result = trainer.function(config.to_dict())
    if isinstance(result, dict) and result:
        print_report(result)
    return 0


def main(args: argparse.Namespace) -> int:
    if args.trainer != schema.DEFAULT_TRAINER:
        return run_user_trainer(args)
    config = config_module.TrainerConfig.from_dict({name: getattr(args, name) for name in config_module.FACTORS})

    # Every input is checked (config above; archive and GloVe file here) before TensorFlow loads: a missing
    # file is one line on stderr, and `glovesweep train --help` never waits for TensorFlow either.
    from trainer import prepare as prepare_module

    data = prepare_module.prepare(config, data_home=args.data_dir, cache_dir=args.cache_dir,
                                  download_if_missing=not args.no_download)
    stats = data.stats
    print(f"data: {stats['num_train']} train / {stats['num_val']} val documents, leakage {stats['leakage']:.3f}, "
          f"label header in {stats['leak_fraction_train']:.3f} of train / {stats['leak_fraction_val']:.3f} of val, "
          f"vocabulary {stats['vocabulary_size']}, matrix rows {stats['matrix_rows']}, "
          f"GloVe coverage {stats['glove_coverage']:.3f}, out-of-range ids {stats['out_of_range_ids']}, "
          f"{'cache hit' if stats['cache_hit'] else 'built'} in {stats['prepare_seconds']:.1f} s", flush=True)

    with console.native_stderr_held(enabled=not getattr(args, "verbose", False)):
        # TensorFlow's C++ start-up lines come while it loads and when it first looks for a GPU (a failed
        # cuInit on a machine without one); -v shows them.
        import tensorflow

        from trainer import train as train_module

        tensorflow.config.list_physical_devices("GPU")

    def on_epoch(epoch, metrics, state):
        print(f"epoch {epoch}/{config.epochs}: loss {metrics['loss']:.4f} acc {metrics['acc']:.4f} "
              f"val_loss {metrics['val_loss']:.4f} val_acc {metrics['val_acc']:.4f} "
              f"({metrics['epoch_seconds']:.1f} s)", flush=True)

    history = train_module.train(config, data, on_epoch=on_epoch)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(history, handle, indent=1)
    return 0
