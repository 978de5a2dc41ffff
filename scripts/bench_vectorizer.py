"""Time trainer.vectorizer on the whole 20 Newsgroups 19,997 set against a plain port of Keras 2's own loops.

Run:  .venv/bin/python scripts/bench_vectorizer.py [--archive ../shared/data/20news-19997.tar.gz] [--repeats 3]

Both sides fit a Tokenizer(num_words=20000) on every text, convert the texts to sequences and pad them to
1000 steps (the Keras blog's pipeline); the script asserts that word_counts, word_index and the padded
arrays are identical, then prints the best-of-N seconds and the speed ratio. The reference is a
line-by-line port of keras-preprocessing 1.1.x text.py / sequence.py (Keras 3 no longer ships them).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tarfile
import time
from collections import OrderedDict

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


# ---- Reference: keras_preprocessing/text.py and sequence.py (Keras 2.x), defaults only, no oov_token. ----

def reference_text_to_word_sequence(text, filters='!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n', lower=True, split=" "):
    if lower:
        text = text.lower()
    translate_map = str.maketrans(dict((c, split) for c in filters))
    text = text.translate(translate_map)
    seq = text.split(split)
    return [i for i in seq if i]


class ReferenceTokenizer:
    def __init__(self, num_words=None):
        self.word_counts = OrderedDict()
        self.num_words = num_words

    def fit_on_texts(self, texts):
        for text in texts:
            seq = reference_text_to_word_sequence(text)
            for w in seq:
                if w in self.word_counts:
                    self.word_counts[w] += 1
                else:
                    self.word_counts[w] = 1
        wcounts = list(self.word_counts.items())
        wcounts.sort(key=lambda x: x[1], reverse=True)
        sorted_voc = [wc[0] for wc in wcounts]
        self.word_index = dict(list(zip(sorted_voc, list(range(1, len(sorted_voc) + 1)))))

    def texts_to_sequences(self, texts):
        num_words = self.num_words
        result = []
        for text in texts:
            vect = []
            for w in reference_text_to_word_sequence(text):
                i = self.word_index.get(w)
                if i is not None:
                    if num_words and i >= num_words:
                        continue
                    vect.append(i)
            result.append(vect)
        return result


def reference_pad_sequences(sequences, maxlen, dtype="int32", padding="pre", truncating="pre", value=0.0):
    x = (np.ones((len(sequences), maxlen)) * value).astype(dtype)
    for idx, s in enumerate(sequences):
        if not len(s):
            continue
        trunc = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        trunc = np.asarray(trunc, dtype=dtype)
        if padding == "post":
            x[idx, :len(trunc)] = trunc
        else:
            x[idx, -len(trunc):] = trunc
    return x


def run_reference(texts, num_words, maxlen):
    tokenizer = ReferenceTokenizer(num_words=num_words)
    tokenizer.fit_on_texts(texts)
    return tokenizer, reference_pad_sequences(tokenizer.texts_to_sequences(texts), maxlen)


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
    arguments = parser.parse_args()

    # Other work on the machine inflates wall-clock times; CPU seconds are steadier.
    print(f"load average at start: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    started = time.perf_counter()
    texts = read_archive(arguments.archive)
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
    print(f"reference Keras 2 port        {reference_seconds[0]:6.2f}  {reference_seconds[1]:6.2f}")
    print(f"speed-up                      {reference_seconds[0] / fast_seconds[0]:5.1f}x  "
          f"{reference_seconds[1] / fast_seconds[1]:5.1f}x")
    print(f"load average at end: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")


if __name__ == "__main__":
    main()
