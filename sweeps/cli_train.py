"""``glovesweep train``: one trial on this machine, one line per epoch, no Ray, no MLflow."""

from __future__ import annotations

import argparse
import dataclasses
import json

from trainer import config as config_module


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; use true or false")


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("", "none") else int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = config_module.TrainerConfig()
    choices = {
        "dataset": config_module.DATASETS, "strip": config_module.STRIP_MODES,
        "validation": config_module.VALIDATION_MODES, "vectorizer": config_module.VECTORIZERS,
        "embedding": config_module.EMBEDDING_MODES, "sizing": config_module.SIZING_POLICIES,
        "architecture": config_module.ARCHITECTURES,
    }
    for field in dataclasses.fields(config_module.TrainerConfig):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        help_text = f"{config_module.FIELD_HELP[field.name]} (default: {default})"
        if field.name in choices:
            # No argparse `choices`: the config's ValueError lists the allowed values in one place.
            parser.add_argument(flag, dest=field.name, default=default, help=help_text + f" {{{', '.join(choices[field.name])}}}")
        elif isinstance(default, bool):
            parser.add_argument(flag, dest=field.name, type=_parse_bool, default=default, help=help_text)
        elif field.name in ("max_num_words", "max_sequence_length"):
            parser.add_argument(flag, dest=field.name, type=_optional_int, default=default, help=help_text)
        else:
            parser.add_argument(flag, dest=field.name, type=type(default), default=default, help=help_text)
    parser.add_argument("--data-dir", default=None, help="Data home (default: $GLOVESWEEP_DATA or ~/glovesweep_data).")
    parser.add_argument("--cache-dir", default=None, help="Cache home (default: $GLOVESWEEP_CACHE or ~/.cache/glovesweep).")
    parser.add_argument("--no-download", action="store_true", help="Fail instead of downloading missing files.")
    parser.add_argument("--json", default=None, help="Also write the history as JSON to this file.")


def main(args: argparse.Namespace) -> int:
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(config_module.TrainerConfig)}
    config = config_module.TrainerConfig.from_dict(values)

    # Imported here so that `glovesweep train --help` and config errors never wait for TensorFlow.
    from trainer import prepare as prepare_module
    from trainer import train as train_module

    data = prepare_module.prepare(config, data_home=args.data_dir, cache_dir=args.cache_dir,
                                  download_if_missing=not args.no_download)
    stats = data.stats
    print(f"data: {stats['num_train']} train / {stats['num_val']} val documents, leakage {stats['leakage']:.3f}, "
          f"vocabulary {stats['vocabulary_size']}, matrix rows {stats['matrix_rows']}, "
          f"GloVe coverage {stats['glove_coverage']:.3f}, out-of-range ids {stats['out_of_range_ids']}, "
          f"{'cache hit' if stats['cache_hit'] else 'built'} in {stats['prepare_seconds']:.1f} s", flush=True)

    def on_epoch(epoch, metrics, state):
        print(f"epoch {epoch}/{config.epochs}: loss {metrics['loss']:.4f} acc {metrics['acc']:.4f} "
              f"val_loss {metrics['val_loss']:.4f} val_acc {metrics['val_acc']:.4f} "
              f"({metrics['epoch_seconds']:.1f} s)", flush=True)

    history = train_module.train(config, data, on_epoch=on_epoch)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(history, handle, indent=1)
    return 0
