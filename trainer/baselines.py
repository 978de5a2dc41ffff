"""Non-neural baselines on the same split as the network: TF-IDF + multinomial Naive Bayes or a linear SVM.

They answer "how hard is this cell at all?": a TF-IDF linear model reads the same documents, after the same
header stripping and the same train/validation split (``trainer.split.make_split``), in seconds. Pure trainer
code: no Ray, no MLflow; the sweep logs the returned dict as a child run with ``trainer=baseline``.

The recipe is scikit-learn's example "Classification of text documents using sparse features"
(examples/text/plot_document_classification_20newsgroups.py), which benchmarks both classifiers on 20 Newsgroups.
"""

from __future__ import annotations

import os
import time

import numpy as np
from sklearn import naive_bayes
from sklearn import svm
from sklearn.feature_extraction import text as sklearn_text

from trainer import config as config_module
from trainer import split as split_module

BASELINES = config_module.BASELINES

# The TrainerConfig fields a baseline's result depends on (everything that shapes the split); the others
# (vectorizer, GloVe, embedding, sizing, architecture, epochs, ...) do not touch it. The report uses this to
# put a baseline beside every network cell that shares these values.
DATA_FIELDS = config_module.factor_names("split")

# scikit-learn example "Classification of text documents using sparse features":
# TfidfVectorizer(sublinear_tf=True, max_df=0.5, stop_words="english").
TFIDF_SETTINGS = {"sublinear_tf": True, "max_df": 0.5, "stop_words": "english"}


def _make_classifier(kind: str):
    """A fresh, unfitted classifier for ``kind`` (one of ``BASELINES``)."""
    if kind == "multinomial_nb":
        # Same example, and the scikit-learn user guide's 20 newsgroups page: MultinomialNB(alpha=.01).
        return naive_bayes.MultinomialNB(alpha=0.01)
    # Same example: LinearSVC(penalty="l2", dual=False, tol=1e-3). Solved here in its dual form, the same
    # optimum (equal accuracy on 19997) but 6x faster when, as here, features outnumber documents.
    return svm.LinearSVC(penalty="l2", dual=True, tol=1e-3, max_iter=1000)


def run_baseline(config: config_module.TrainerConfig, kind: str, *,
                 data_home: str | os.PathLike | None = None, download_if_missing: bool = True) -> dict:
    """Fit TF-IDF + a linear classifier on the config's training split and score it on its validation split.

    Parameters
    ----------
    config : TrainerConfig
        Only the fields in ``DATA_FIELDS`` matter (dataset, stripping, validation split, dedup, seed...).
    kind : str
        One of ``BASELINES``: ``"multinomial_nb"`` or ``"linear_svm"``.
    data_home : path, optional
        Passed to ``trainer.split.make_split`` (default: ``$GLOVESWEEP_DATA`` or ``~/glovesweep_data``).
    download_if_missing : bool
        Passed to ``trainer.split.make_split``; False raises ``OSError`` when the archive is absent.

    Returns
    -------
    dict
        ``val_acc`` and ``train_acc`` (fractions in [0, 1]), ``leakage`` (fraction of validation documents
        whose stripped body occurs in train, from the split), ``leak_fraction_train`` and ``leak_fraction_val``
        (fractions still carrying a header line that names their group, ``trainer.headers.label_header_fraction``),
        ``fit_seconds`` (vectorizer fit + classifier fit,
        wall seconds), ``num_train`` and ``num_val`` (documents), ``num_features`` (TF-IDF vocabulary size).
    """
    if kind not in BASELINES:
        raise ValueError(f"baseline kind {kind!r} is not allowed; allowed values: {', '.join(map(repr, BASELINES))}")
    split = split_module.make_split(config, data_home=data_home, download_if_missing=download_if_missing)
    train_labels = np.asarray(split.train_labels)
    val_labels = np.asarray(split.val_labels)

    vectorizer = sklearn_text.TfidfVectorizer(**TFIDF_SETTINGS)
    classifier = _make_classifier(kind)
    started = time.perf_counter()
    try:
        train_features = vectorizer.fit_transform(split.train_texts)
    except ValueError as error:
        # scikit-learn says "After pruning, no terms remain" / "empty vocabulary" on degenerate corpora.
        raise ValueError(f"TF-IDF found no usable terms in the {len(split.train_texts)} training documents of "
                         f"dataset={config.dataset!r}, strip={config.strip!r} ({error}); use more documents "
                         f"(documents_per_group=0) or a milder strip mode") from error
    classifier.fit(train_features, train_labels)
    fit_seconds = time.perf_counter() - started
    val_features = vectorizer.transform(split.val_texts)
    return {
        "val_acc": float(np.mean(classifier.predict(val_features) == val_labels)),
        "train_acc": float(np.mean(classifier.predict(train_features) == train_labels)),
        "leakage": float(split.leakage),
        "leak_fraction_train": float(split.leak_fraction_train),
        "leak_fraction_val": float(split.leak_fraction_val),
        "fit_seconds": float(fit_seconds),
        "num_train": int(len(split.train_texts)),
        "num_val": int(len(split.val_texts)),
        "num_features": int(train_features.shape[1]),
    }
