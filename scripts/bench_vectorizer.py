"""Time trainer.vectorizer on the whole 20 Newsgroups 19,997 set against Keras' own Tokenizer.

Run:  .venv/bin/python scripts/bench_vectorizer.py [--archive ../shared/data/20news-19997.tar.gz] [--repeats 3]
      .venv/bin/python scripts/bench_vectorizer.py --smoke-test   (the first 500 documents, one repeat)

Both sides fit a Tokenizer(num_words=20000) on every text, convert the texts to sequences and pad them to
1000 steps (the Keras blog's pipeline); the script asserts that word_counts, word_index and the padded
arrays are identical, then prints the best-of-N seconds and the speed ratio. The reference is Keras' own
Tokenizer (keras-preprocessing 1.1.x text.py, kept in Keras 3 as keras/src/legacy/preprocessing/text.py but
exported only under the private keras._tf_keras path, keras-team/keras#19517) and keras.utils.pad_sequences.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pathlib
import sys
import tarfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer import config as config_module  # noqa: E402
from trainer import vectorizer  # noqa: E402

DEFAULT_ARCHIVE = ROOT.parent / "shared" / "data" / "20news-19997.tar.gz"


def read_archive(path: pathlib.Path) -> list[str]:
    """Every post, Latin-1, ordered by group then file name (the blog's sorted(os.listdir(...)))."""
    documents = []
    with tarfile.open(path) as archive:
        for member in archive:
            if member.isfile():
                documents.append((member.name, archive.extractfile(member).read().decode("latin-1")))
    documents.sort()
    return [text for _, text in documents]


KERAS_TEXT_MODULE = "keras._tf_keras.keras.preprocessing.text"
SMOKE_DOCUMENTS = 500


def keras_reference():
    """Keras' Tokenizer class and ``keras.utils.pad_sequences``; a one-line error if the Tokenizer is gone."""
    try:
        text = importlib.import_module(KERAS_TEXT_MODULE)
    except ImportError as error:
        raise SystemExit(f"{KERAS_TEXT_MODULE} cannot be imported ({error}): this Keras no longer ships the Keras 2 "
                         f"Tokenizer under its private path; install the pinned tensorflow~=2.21.0 with its Keras 3.15"
                         ) from error
    import keras

    return text.Tokenizer, keras.utils.pad_sequences


def run_reference(texts, num_words, maxlen):
    tokenizer_class, pad_sequences = keras_reference()
    tokenizer = tokenizer_class(num_words=num_words)
    tokenizer.fit_on_texts(texts)
    return tokenizer, pad_sequences(tokenizer.texts_to_sequences(texts), maxlen=maxlen)


def run_fast(texts, num_words, maxlen):
    config = config_module.TrainerConfig(vectorizer="keras2", max_num_words=num_words, max_sequence_length=maxlen)
    # vectorize() is what a trial runs: fit on train + val, convert, pad. Train is everything here.
    return vectorizer.vectorize(config, texts, [])


def best_of(function, repeats):
    """Best wall-clock and best CPU seconds over ``repeats`` runs, and the last result."""
    best_wall, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return (best_wall, best_cpu), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=pathlib.Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-words", type=int, default=20000)
    parser.add_argument("--maxlen", type=int, default=1000)
    parser.add_argument("--smoke-test", action="store_true",
                        help=f"the first {SMOKE_DOCUMENTS} documents and one repeat: checks the script, not the speed")
    arguments = parser.parse_args()
    if arguments.smoke_test:
        arguments.repeats = 1
    keras_reference()  # Fails before the archive is read if the reference is gone; imports Keras outside the timing.

    # Other work on the machine inflates wall-clock times; CPU seconds are steadier.
    print(f"load average at start: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    started = time.perf_counter()
    texts = read_archive(arguments.archive)
    if arguments.smoke_test:
        texts = texts[:SMOKE_DOCUMENTS]
    print(f"read {len(texts)} documents in {time.perf_counter() - started:.2f} s")

    fast_seconds, vectorized = best_of(lambda: run_fast(texts, arguments.num_words, arguments.maxlen),
                                       arguments.repeats)
    reference_seconds, (reference, reference_padded) = best_of(
        lambda: run_reference(texts, arguments.num_words, arguments.maxlen), arguments.repeats)

    tokenizer = vectorizer.KerasTokenizer(num_words=arguments.num_words).fit_on_texts(texts)
    assert list(tokenizer.word_counts.items()) == list(reference.word_counts.items()), "word_counts differ"
    assert vectorized.word_index == reference.word_index, "word_index differs"
    assert list(vectorized.word_index) == list(reference.word_index), "word_index order differs"
    assert vectorized.x_train.dtype == reference_padded.dtype == np.int32
    assert np.array_equal(vectorized.x_train, reference_padded), "padded sequences differ"
    print(f"identical output: {len(reference.word_index)} words, x shape {vectorized.x_train.shape}")
    print(f"best of {arguments.repeats}                    wall s   CPU s")
    print(f"trainer.vectorizer.vectorize  {fast_seconds[0]:6.2f}  {fast_seconds[1]:6.2f}")
    print(f"Keras Tokenizer (reference)   {reference_seconds[0]:6.2f}  {reference_seconds[1]:6.2f}")
    print(f"speed-up                      {reference_seconds[0] / fast_seconds[0]:5.1f}x  "
          f"{reference_seconds[1] / fast_seconds[1]:5.1f}x")
    print(f"load average at end: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")


if __name__ == "__main__":
    main()
