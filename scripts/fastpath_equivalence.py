"""Train with both compute paths on the real archive, several seeds: the fast path's val_acc within seed noise.

    python scripts/fastpath_equivalence.py --data-dir ../shared/data [--epochs 2] [--seeds 0,1,2]
        [--out docs/benchmarks/fastpath-equivalence.json]
    python scripts/fastpath_equivalence.py --data-dir ../shared/data --dataset bydate --strip sklearn_all \
        --embedding trainable --seeds 0,1,2,3,4 --out docs/benchmarks/fastpath-equivalence-trainable.json
    python scripts/fastpath_equivalence.py --smoke --data-dir TINY_DATA_HOME --out FILE   # what the test runs

Both paths compute the same function and gradients (tests/test_fastpath.py checks one step to float
tolerance); over many steps float summation order makes the runs drift apart the way a tiny perturbation
would. This script shows how far: for each seed it trains the blog's setup (19997, GloVe 50d frozen,
blog_flatten; ``--dataset``, ``--strip`` and ``--embedding`` change it) with ``compute_path="keras"`` and
``"fast"`` and compares the paths' final val_acc with the spread between seeds (``compare``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics

ROOT = pathlib.Path(__file__).resolve().parents[1]


def compare(final: dict[str, list[float]]) -> dict:
    """The paths' difference against seed noise.

    After a few hundred steps two runs that differ only in float summation order have drifted as far apart
    as two seeds (training is chaotic at this learning rate), so a seed-paired difference is itself a draw
    of seed noise; the question is whether the paths' means differ by more than the seeds' spread allows:
    Welch's t-test (scipy) on the per-seed values.

    Parameters
    ----------
    final : dict
        ``{"keras": [val_acc per seed], "fast": [val_acc per seed]}``, seeds in the same order.

    Returns
    -------
    dict
        ``difference_per_seed`` (fast - keras), ``largest_difference``, per path ``mean``,
        ``standard_deviation`` and ``spread`` (max - min), ``difference_of_means`` and its
        ``standard_error``, ``welch_p_value``, and ``within_seed_noise`` (p > 0.05, or identical values).
    """
    from scipy import stats

    differences = [fast - keras for fast, keras in zip(final["fast"], final["keras"])]
    deviation = {path: statistics.stdev(values) if len(values) > 1 else 0.0 for path, values in final.items()}
    mean = {path: statistics.fmean(values) for path, values in final.items()}
    standard_error = sum(deviation[path] ** 2 / len(final[path]) for path in final) ** 0.5
    if standard_error > 0:
        p_value = float(stats.ttest_ind(final["fast"], final["keras"], equal_var=False).pvalue)
    else:
        p_value = 1.0 if mean["fast"] == mean["keras"] else 0.0
    return {"difference_per_seed": differences, "largest_difference": max(abs(value) for value in differences),
            "mean": mean, "standard_deviation": deviation,
            "spread": {path: max(values) - min(values) for path, values in final.items()},
            "difference_of_means": mean["fast"] - mean["keras"], "standard_error": standard_error,
            "welch_p_value": p_value, "within_seed_noise": p_value > 0.05}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--dataset", default="19997")
    parser.add_argument("--strip", default="none", help="Header stripping (trainer config 'strip').")
    parser.add_argument("--embedding", default="frozen", choices=("frozen", "trainable", "random"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--smoke", action="store_true", help="One epoch, two seeds (for a tiny data home).")
    parser.add_argument("--out", default=None, help="Write the results as JSON here too.")
    args = parser.parse_args(argv)

    from trainer import config as config_module
    from trainer import prepare as prepare_module
    from trainer import train as train_module

    epochs, seeds = (1, [0, 1]) if args.smoke else (args.epochs, [int(seed) for seed in args.seeds.split(",")])
    runs, final = [], {"keras": [], "fast": []}
    for seed in seeds:
        base = config_module.TrainerConfig(dataset=args.dataset, strip=args.strip, embedding=args.embedding,
                                           epochs=epochs, seed=seed)
        data = prepare_module.prepare(base, data_home=args.data_dir, download_if_missing=False)
        for path in ("keras", "fast"):
            history = train_module.train(base.replace(compute_path=path), data)
            runs.append({"seed": seed, "compute_path": path,
                         **{name: history[name] for name in ("loss", "acc", "val_loss", "val_acc", "epoch_seconds")}})
            final[path].append(history["val_acc"][-1])
            print(f"seed {seed} {path}: val_acc {history['val_acc']} epoch_seconds "
                  f"{[round(value, 1) for value in history['epoch_seconds']]}", flush=True)
    report = {"mode": "smoke" if args.smoke else "full", "dataset": args.dataset, "strip": args.strip,
              "embedding": args.embedding, "epochs": epochs, "seeds": seeds,
              "config": base.replace(seed=0, compute_path="fast").to_dict(), "final_val_acc": final,
              **compare(final), "runs": runs}
    print(f"final val_acc keras {final['keras']}, fast {final['fast']}; mean fast - keras "
          f"{report['difference_of_means']:+.4f} (standard error {report['standard_error']:.4f}, Welch p "
          f"{report['welch_p_value']:.2f}) -> within seed noise: {report['within_seed_noise']}")
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
