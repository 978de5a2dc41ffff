"""A user's trainer: a linear classifier on scikit-learn's handwritten digits, trained epoch by epoch.

Nothing here is glovesweep's own model: it is the kind of training function a Ray Tune user already has,
declared with ``@trainer`` so that a sweep file can name it (``trainer: digits_trainer:train``). The data set
ships with scikit-learn (1,797 8x8 images, no download). Each epoch is one pass of ``SGDClassifier.partial_fit``
over the training images in an order drawn from (seed, epoch); the checkpoint is the weights in a NumPy
``.npz`` file (no pickle), so a killed trial continues from its last epoch.
"""

from __future__ import annotations

import pathlib
import tempfile

import numpy as np
from ray.tune import Checkpoint
from sklearn import datasets, linear_model, metrics, model_selection

from sweeps.trainers import Factor, Metric, get_checkpoint, report, trainer

WEIGHTS = "weights.npz"


@trainer(
    name="digits_sgd",
    factors=[
        Factor("loss", str, "hinge", "SGDClassifier loss: hinge (a linear SVM) or log_loss (logistic regression).",
               choices=("hinge", "log_loss", "modified_huber")),
        Factor("alpha", float, 0.0001, "L2 regularization strength (SGDClassifier alpha).", gt=0.0),
        Factor("epochs", int, 10, "Passes over the training images.", ge=1),
        Factor("validation_split", float, 0.25, "Fraction of the images held out, stratified by digit.",
               gt=0.0, lt=1.0),
        Factor("seed", int, 0, "Seed of the split, the initial order and every epoch's shuffle.", ge=0),
    ],
    metrics=[Metric("val_acc", "max", low=0.0, high=1.0, help="validation accuracy"),
             Metric("train_acc", "max", low=0.0, high=1.0, help="training accuracy")],
    checkpoints=True,
)
def train(config: dict) -> None:
    """SGD on the digits, one report per epoch."""
    images, labels = datasets.load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = model_selection.train_test_split(
        images / 16.0, labels, test_size=config["validation_split"], stratify=labels, random_state=config["seed"])
    model = linear_model.SGDClassifier(loss=config["loss"], alpha=config["alpha"], learning_rate="optimal",
                                       random_state=config["seed"])
    classes = np.unique(labels)
    start = 0
    checkpoint = get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            saved = np.load(pathlib.Path(folder) / WEIGHTS, allow_pickle=False)
            start = int(saved["epoch"])
            model.partial_fit(x_train[:1], y_train[:1], classes=classes)  # creates the attributes, then overwrite
            model.coef_, model.intercept_, model.t_ = saved["coef"], saved["intercept"], float(saved["t"])
    for epoch in range(start + 1, config["epochs"] + 1):
        order = np.random.default_rng([config["seed"], epoch]).permutation(len(x_train))
        model.partial_fit(x_train[order], y_train[order], classes=classes)
        with tempfile.TemporaryDirectory() as folder:
            np.savez(pathlib.Path(folder) / WEIGHTS, coef=model.coef_, intercept=model.intercept_, t=model.t_,
                     epoch=epoch)
            report({"val_acc": metrics.accuracy_score(y_val, model.predict(x_val)),
                    "train_acc": metrics.accuracy_score(y_train, model.predict(x_train))},
                   checkpoint=Checkpoint.from_directory(folder))
