"""Text to padded token ids, faithful to the two historical pipelines the sweep compares.

``keras2``
    The Keras blog (2016) and the Keras 2 examples: ``keras.preprocessing.text.Tokenizer`` fitted on every
    text, ``texts_to_sequences``, then ``pad_sequences`` (pre-padding, pre-truncation). ``KerasTokenizer`` and
    ``padding.pad_flat`` give the same ids as keras-preprocessing 1.1.x (``keras_preprocessing/text.py`` and
    ``sequence.py``), only faster. Keras 3 dropped the Tokenizer from its public API (keras-team/keras#19517)
    and keeps it only under the private ``keras._tf_keras.keras.preprocessing.text``, so the trainer does not
    import it; the tests and ``scripts/bench_vectorizer.py`` use it, with ``keras.utils.pad_sequences``, as the
    reference.
``kerasio2020``
    keras-io "Using pre-trained word embeddings" (fchollet, 2020-05-05): ``TextVectorization(max_tokens=20000,
    output_sequence_length=200)`` adapted on the training texts; ``TextVectorizer2020`` mimics that layer.

Speed: both tokenise the whole corpus with a handful of C-level passes (one ``str.translate`` per text, one
``str.split`` over the joined corpus, one ``defaultdict`` pass that hands out first-seen ids), then count,
rank and map with NumPy. ``scripts/bench_vectorizer.py`` checks the output against Keras' own Tokenizer and
reports the speed ratio.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import re
import string
from collections.abc import Sequence
from typing import Any

import numpy as np

from trainer import padding

# keras_preprocessing/text.py (Keras 2.x) Tokenizer and text_to_word_sequence defaults: all ASCII punctuation
# except the apostrophe, plus tab and newline; lower=True; split=" " (Keras 3: keras/src/legacy/preprocessing/text.py).
KERAS2_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
KERAS2_SPLIT = " "

# TextVectorization's DEFAULT_STRIP_REGEX (TF 2.3 text_vectorization.py, unchanged in Keras 3):
# r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']', i.e. every ASCII punctuation character, apostrophe included.
KERASIO_STRIP = string.punctuation
# tf.strings.split with no separator splits on ASCII whitespace only (absl::ascii_isspace).
ASCII_WHITESPACE = " \t\n\v\f\r"
# TextVectorization reserves index 0 for padding ('') and index 1 for out-of-vocabulary tokens ('[UNK]').
PADDING_TOKEN = ""
OOV_TOKEN = "[UNK]"

# Python's str.split() with no argument splits on every Unicode whitespace character, but neither pipeline
# does. Whitespace that must stay inside a token is swapped, in the same translate pass, for a punctuation
# character that the standardisation itself removes (so it cannot occur otherwise), and swapped back in the
# small vocabulary afterwards. Another such character, "!", separates the documents in the joined corpus.
# Every placeholder is ASCII, so Latin-1 text stays one byte per character all the way.
_UNICODE_WHITESPACE = [chr(code) for code in range(0x110000) if chr(code).isspace()]
_DOCUMENT_SEPARATOR = "!"


def _tables(splitting: str, removed: str) -> tuple[dict[int, Any], dict[int, str], re.Pattern]:
    """Forward table (placeholders only), reverse table and a pattern matching any placeholder."""
    kept_whitespace = [character for character in _UNICODE_WHITESPACE if character not in splitting]
    spare = [character for character in removed if character not in _UNICODE_WHITESPACE + [_DOCUMENT_SEPARATOR]]
    assert len(spare) >= len(kept_whitespace), "not enough removed characters to stand in for whitespace"
    forward = {ord(character): placeholder for character, placeholder in zip(kept_whitespace, spare)}
    reverse = {ord(placeholder): character for character, placeholder in zip(kept_whitespace, spare)}
    pattern = re.compile("[" + re.escape("".join(spare[: len(kept_whitespace)])) + "]")
    return forward, reverse, pattern


def _keras2_tables() -> tuple[dict[int, Any], dict[int, str], re.Pattern]:
    # Tab and newline are filters, so they split like the space.
    forward, reverse, pattern = _tables(KERAS2_SPLIT + KERAS2_FILTERS, KERAS2_FILTERS)
    # text_to_word_sequence translates every filter character to the split character.
    forward.update({ord(character): KERAS2_SPLIT for character in KERAS2_FILTERS})
    return forward, reverse, pattern


def _kerasio_tables() -> tuple[dict[int, Any], dict[int, str], re.Pattern]:
    forward, reverse, pattern = _tables(ASCII_WHITESPACE, KERASIO_STRIP)
    forward.update({ord(character): " " for character in ASCII_WHITESPACE})
    # tf.strings.lower without an encoding lowercases ASCII letters only ('É' stays 'É').
    forward.update({ord(upper): lower for upper, lower in zip(string.ascii_uppercase, string.ascii_lowercase)})
    forward.update({ord(character): None for character in KERASIO_STRIP})
    return forward, reverse, pattern


_KERAS2_FORWARD, _KERAS2_REVERSE, _KERAS2_PLACEHOLDERS = _keras2_tables()
_KERASIO_FORWARD, _KERASIO_REVERSE, _KERASIO_PLACEHOLDERS = _kerasio_tables()


@dataclasses.dataclass(frozen=True)
class Tokenized:
    """A tokenised corpus: ``words[ids[k]]`` is the k-th token; documents are consecutive runs of ``lengths``.

    Attributes
    ----------
    words : list of str
        Distinct tokens in first-seen order.
    ids : np.ndarray of int64, shape (total_tokens,)
        Index into ``words`` of every token, documents concatenated.
    lengths : np.ndarray of int64, shape (num_documents,)
        Tokens per document.
    """

    words: list[str]
    ids: np.ndarray
    lengths: np.ndarray

    def counts(self, first_document: int = 0, stop_document: int | None = None) -> np.ndarray:
        """Occurrences of each word (int64, shape ``(len(words),)``) within a range of documents."""
        bounds = np.concatenate([[0], np.cumsum(self.lengths)])
        stop_document = len(self.lengths) if stop_document is None else stop_document
        segment = self.ids[bounds[first_document]:bounds[stop_document]]
        return np.bincount(segment, minlength=len(self.words)).astype(np.int64)


def _tokenize(texts: Sequence[str], *, keras2: bool) -> Tokenized:
    """Split every text into tokens the way Keras 2 (``keras2=True``) or TextVectorization does."""
    texts = list(texts)
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{position}] is a {type(text).__name__}, not a str; decode documents first")
    if keras2:
        # text_to_word_sequence lowercases (full Unicode str.lower) before translating.
        standardized = [text.lower().translate(_KERAS2_FORWARD) for text in texts]
        reverse, placeholders = _KERAS2_REVERSE, _KERAS2_PLACEHOLDERS
    else:
        standardized = [text.translate(_KERASIO_FORWARD) for text in texts]
        reverse, placeholders = _KERASIO_REVERSE, _KERASIO_PLACEHOLDERS
    tokens = f" {_DOCUMENT_SEPARATOR} ".join(standardized).split()
    del standardized
    # First-seen ids in one C-level pass: a missing key asks the counter for the next id. The separator
    # takes id 0 so that real words start at 1.
    first_seen = collections.defaultdict(itertools.count().__next__)
    first_seen[_DOCUMENT_SEPARATOR]  # noqa: B018 - reserves id 0
    ids = np.fromiter(map(first_seen.__getitem__, tokens), dtype=np.int64, count=len(tokens))
    del tokens
    words = list(first_seen)[1:]
    joined = "\n".join(words)  # No word holds a newline: the split removed them all.
    if placeholders.search(joined):
        words = joined.translate(reverse).split("\n")
    if not texts:
        return Tokenized(words=[], ids=np.zeros(0, dtype=np.int64), lengths=np.zeros(0, dtype=np.int64))
    separators = np.flatnonzero(ids == 0)
    bounds = np.concatenate([[-1], separators, [len(ids)]])
    lengths = (np.diff(bounds) - 1).astype(np.int64)
    return Tokenized(words=words, ids=ids[ids != 0] - 1, lengths=lengths)


def _split_flat(flat: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    if len(lengths) == 0:
        return []
    return [part.tolist() for part in np.split(flat, np.cumsum(lengths)[:-1])]


class KerasTokenizer:
    """Keras 2 ``keras.preprocessing.text.Tokenizer`` with its default settings, reimplemented exactly.

    tests/test_vectorizer.py checks it against the real Tokenizer, which Keras 3 keeps only under the
    private ``keras._tf_keras.keras.preprocessing.text``.

    Parameters
    ----------
    num_words : int or None
        Keep only ids below ``num_words`` in ``texts_to_sequences`` (the ``num_words - 1`` most frequent
        words); None or 0 keeps every word.

    Attributes
    ----------
    word_counts : dict of str to int
        Occurrences of each word, in first-seen order (Keras: an ``OrderedDict``).
    word_index : dict of str to int
        Word to id, 1 for the most frequent word; ties keep first-seen order (a stable sort).
    document_count : int
        Texts seen by ``fit_on_texts``.

    Notes
    -----
    No ``oov_token`` (the blog used none): words outside the index, or with ids >= ``num_words``, are dropped.
    """

    def __init__(self, num_words: int | None = None) -> None:
        if num_words is not None and (isinstance(num_words, bool) or not isinstance(num_words, int)
                                      or num_words < 0):
            raise ValueError(f"num_words={num_words!r}: must be None or an integer >= 0, e.g. 20000")
        self.num_words = num_words
        self.word_counts: dict[str, int] = {}
        self.word_index: dict[str, int] = {}
        self.document_count = 0

    def fit_on_texts(self, texts: Sequence[str]) -> "KerasTokenizer":
        """Count the words of ``texts`` (added to earlier fits) and rebuild ``word_index``."""
        self.fit_on_tokenized(_tokenize(texts, keras2=True))
        return self

    def fit_on_tokenized(self, tokenized: Tokenized) -> "KerasTokenizer":
        """Fit on an already tokenised corpus (``fit_on_texts`` without the tokenising)."""
        counts = tokenized.counts()
        self.document_count += len(tokenized.lengths)
        present = np.flatnonzero(counts)
        if not self.word_counts:
            self.word_counts = dict(zip(map(tokenized.words.__getitem__, present.tolist()), counts[present].tolist()))
        else:
            for position in present.tolist():
                word = tokenized.words[position]
                self.word_counts[word] = self.word_counts.get(word, 0) + int(counts[position])
        words = list(self.word_counts)
        totals = np.fromiter(self.word_counts.values(), dtype=np.int64, count=len(words))
        # keras_preprocessing/text.py: wcounts.sort(key=lambda x: x[1], reverse=True) on the OrderedDict items;
        # Python's sort is stable, so equal counts keep first-seen order, as a stable argsort does.
        order = np.argsort(-totals, kind="stable")
        self.word_index = dict(zip(map(words.__getitem__, order.tolist()), range(1, len(words) + 1)))
        return self

    @property
    def index_word(self) -> dict[int, str]:
        """Id to word, the inverse of ``word_index``."""
        return {index: word for word, index in self.word_index.items()}

    def tokenized_to_ids(self, tokenized: Tokenized) -> tuple[np.ndarray, np.ndarray]:
        """Kept ids of every document, concatenated (int64), and the kept length of each document."""
        # Per distinct token: its id, 0 for words outside the index or cut by num_words (all dropped).
        lookup = np.fromiter(map(self.word_index.get, tokenized.words, itertools.repeat(0)), dtype=np.int64,
                             count=len(tokenized.words))
        if self.num_words:
            # keras_preprocessing/text.py texts_to_sequences: `if num_words and i >= num_words: continue`.
            lookup[lookup >= self.num_words] = 0
        mapped = lookup[tokenized.ids]
        keep = mapped != 0
        # Kept tokens per document: differences of the running kept count at the document bounds.
        running = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
        bounds = np.concatenate([[0], np.cumsum(tokenized.lengths)])
        return mapped[keep], np.diff(running[bounds])

    def texts_to_sequences(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text as a list of word ids (Keras semantics; unknown and cut words dropped)."""
        flat, lengths = self.tokenized_to_ids(_tokenize(texts, keras2=True))
        return _split_flat(flat, lengths)


class TextVectorizer2020:
    """keras-io 2020 ``TextVectorization(max_tokens, output_sequence_length)`` with its defaults, mimicked.

    Standardisation ``lower_and_strip_punctuation`` (ASCII lowercasing, every ASCII punctuation character
    removed), split on ASCII whitespace, vocabulary ``['', '[UNK]']`` then the most frequent tokens (ties:
    the larger token first, as TF 2.3's ``sorted(..., key=itemgetter(1, 0), reverse=True)``), unknown
    tokens -> 1, post-padding and post-truncation to ``output_sequence_length``.

    Parameters
    ----------
    max_tokens : int or None
        Vocabulary size including the padding and OOV entries; None keeps every token.
    output_sequence_length : int
        Output length in tokens.
    """

    def __init__(self, max_tokens: int | None = 20000, output_sequence_length: int = 200) -> None:
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens < 3):
            raise ValueError(f"max_tokens={max_tokens!r}: must be None or an integer >= 3, e.g. 20000")
        if isinstance(output_sequence_length, bool) or not isinstance(output_sequence_length, int) \
                or output_sequence_length < 1:
            raise ValueError(f"output_sequence_length={output_sequence_length!r}: must be an integer >= 1, e.g. 200")
        self.max_tokens = max_tokens
        self.output_sequence_length = output_sequence_length
        self.vocabulary: list[str] = [PADDING_TOKEN, OOV_TOKEN]
        self.word_index: dict[str, int] = {PADDING_TOKEN: 0, OOV_TOKEN: 1}

    def adapt(self, texts: Sequence[str]) -> "TextVectorizer2020":
        """Build the vocabulary from ``texts`` (keras-io adapts on the training samples only)."""
        tokenized = _tokenize(texts, keras2=False)
        return self.adapt_tokenized(tokenized, tokenized.counts())

    def adapt_tokenized(self, tokenized: Tokenized, counts: np.ndarray) -> "TextVectorizer2020":
        """Build the vocabulary from per-word ``counts`` of an already tokenised corpus."""
        present = np.flatnonzero(counts).tolist()
        # Token descending first, then a stable sort by count descending: (count, token) both descending.
        by_token = sorted(present, key=tokenized.words.__getitem__, reverse=True)
        order = np.asarray(by_token, dtype=np.int64)[np.argsort(-counts[by_token], kind="stable")] \
            if by_token else np.zeros(0, dtype=np.int64)
        if self.max_tokens is not None:
            order = order[: self.max_tokens - 2]
        self.vocabulary = [PADDING_TOKEN, OOV_TOKEN] + [tokenized.words[position] for position in order.tolist()]
        self.word_index = {word: index for index, word in enumerate(self.vocabulary)}
        return self

    def get_vocabulary(self) -> list[str]:
        """Vocabulary, index 0 the padding token '' and index 1 the OOV token '[UNK]'."""
        return list(self.vocabulary)

    def transform_tokenized(self, tokenized: Tokenized) -> np.ndarray:
        """Padded ids (int32, shape (documents, output_sequence_length)) of a tokenised corpus."""
        lookup = np.fromiter(map(self.word_index.get, tokenized.words, itertools.repeat(1)), dtype=np.int64,
                             count=len(tokenized.words))
        # '' and '[UNK]' never come out of the standardisation, but a token equal to either is still OOV-safe.
        return padding.pad_flat(lookup[tokenized.ids], tokenized.lengths, self.output_sequence_length,
                                padding="post", truncating="post", dtype="int32")

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Vectorize ``texts``: int32 array of shape (len(texts), output_sequence_length)."""
        return self.transform_tokenized(_tokenize(texts, keras2=False))


@dataclasses.dataclass(frozen=True)
class Vectorized:
    """Token ids for one split.

    Attributes
    ----------
    x_train, x_val : np.ndarray of int32, shape (N, sequence_length)
    word_index : dict of str to int
        The vectorizer's full index (keras2: every word fitted; kerasio2020: the vocabulary, '' -> 0,
        '[UNK]' -> 1, as keras-io's ``dict(zip(voc, range(len(voc))))``).
    num_words : int
        The vocabulary cap in effect (``config.num_words``).
    vocabulary_size : int
        ``len(word_index)``.
    """

    x_train: np.ndarray
    x_val: np.ndarray
    word_index: dict[str, int]
    num_words: int
    vocabulary_size: int


def vectorize(
    config: Any,
    train_texts: Sequence[str],
    val_texts: Sequence[str],
    *,
    fit_order: Sequence[int] | None = None,
) -> Vectorized:
    """Turn the split's texts into padded ids with the pipeline ``config.vectorizer`` names.

    Parameters
    ----------
    config : trainer.config.TrainerConfig
        Uses ``vectorizer``, ``num_words`` and ``sequence_length``.
    train_texts, val_texts : sequence of str
    fit_order : sequence of int, optional
        keras2 only: positions in ``train_texts + val_texts`` listing the documents in corpus order (the
        order the blog read them, before its shuffle). Word-index ties keep first-seen order, so this makes
        the index identical to the blog's; default: train then val.

    Returns
    -------
    Vectorized
    """
    train_texts, val_texts = list(train_texts), list(val_texts)
    num_train = len(train_texts)
    if config.vectorizer == "keras2":
        # Keras blog (2016): tokenizer.fit_on_texts(texts) on ALL texts, before the train/val split.
        all_texts = train_texts + val_texts
        order = np.arange(len(all_texts)) if fit_order is None else np.asarray(fit_order, dtype=np.int64)
        if sorted(order.tolist()) != list(range(len(all_texts))):
            raise ValueError(f"fit_order must be a permutation of range({len(all_texts)}) "
                             f"(positions in train_texts + val_texts)")
        tokenized = _tokenize([all_texts[position] for position in order.tolist()], keras2=True)
        tokenizer = KerasTokenizer(num_words=config.num_words).fit_on_tokenized(tokenized)
        flat, lengths = tokenizer.tokenized_to_ids(tokenized)
        padded = padding.pad_flat(flat, lengths, config.sequence_length, padding="pre", truncating="pre")
        # Rows come out in fit order; put them back in train + val order.
        restored = np.empty_like(padded)
        restored[order] = padded
        word_index = tokenizer.word_index
        x_train, x_val = restored[:num_train], restored[num_train:]
    elif config.vectorizer == "kerasio2020":
        tokenized = _tokenize(train_texts + val_texts, keras2=False)
        vectorizer = TextVectorizer2020(max_tokens=config.num_words, output_sequence_length=config.sequence_length)
        # keras-io 2020: vectorizer.adapt(text_ds) with text_ds built from train_samples only.
        vectorizer.adapt_tokenized(tokenized, tokenized.counts(0, num_train))
        padded = vectorizer.transform_tokenized(tokenized)
        word_index = vectorizer.word_index
        x_train, x_val = padded[:num_train], padded[num_train:]
    else:
        raise ValueError(f"vectorizer={config.vectorizer!r} is not allowed; allowed values: 'keras2', 'kerasio2020'")
    return Vectorized(x_train=np.ascontiguousarray(x_train, dtype=np.int32),
                      x_val=np.ascontiguousarray(x_val, dtype=np.int32), word_index=dict(word_index),
                      num_words=int(config.num_words), vocabulary_size=len(word_index))
