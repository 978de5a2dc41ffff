"""trainer.vectorizer: Keras 2 Tokenizer / pad_sequences fidelity, the 2020 TextVectorization mimic, vectorize()."""

from __future__ import annotations

import random
import tarfile

import numpy as np
import pytest

from trainer import config as config_module
from trainer import padding
from trainer import vectorizer

# The oracle is Keras' own Tokenizer (keras_preprocessing/text.py, kept in Keras 3 as
# keras/src/legacy/preprocessing/text.py). Keras 3 dropped it from its public API (keras-team/keras#19517) and
# exports it only under this private path, so tests that need it skip where a Keras release removes it.
KERAS_TEXT_MODULE = "keras._tf_keras.keras.preprocessing.text"


def keras_text():
    """The real Keras 2 text module (``Tokenizer``, ``text_to_word_sequence``), or skip."""
    return pytest.importorskip(KERAS_TEXT_MODULE, reason=f"{KERAS_TEXT_MODULE} (the Keras 2 Tokenizer) is gone")


def keras_pad_sequences():
    """``keras.utils.pad_sequences`` (public in Keras 3, the same code as Keras 2's), or skip."""
    return pytest.importorskip("keras").utils.pad_sequences


def random_texts(seed, count, alphabet, longest=60):
    generator = random.Random(seed)
    return ["".join(generator.choice(alphabet) for _ in range(generator.randint(0, longest))) for _ in range(count)]


# Every kind of character the keras2 fast path treats specially: all whitespace (Python's str.split() splits
# on it, Keras on " " only), the punctuation used as placeholders and document separator, Latin-1 and
# private-use characters, uppercase, and "İ", which str.lower() turns into two characters.
KERAS2_ALPHABET = list("abcAB'!#-.") + [" ", " ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0",
                                        "\u2003", "\u2028", "\u3000", "É", "ß", "İ", "\ue000", "\ue0ff"]


LENGTH = 149  # The shortest sequence the model's conv stack accepts.


def small_config(**changes):
    values = dict(vectorizer="keras2", max_num_words=5, max_sequence_length=LENGTH, architecture="global_max")
    values.update(changes)
    return config_module.TrainerConfig(**values)


def pre(sequence):
    return [0] * (LENGTH - len(sequence)) + list(sequence)


def post(sequence):
    return list(sequence) + [0] * (LENGTH - len(sequence))


# ---- text_to_word_sequence ----

def test_keras2_words_punctuation_apostrophe_tabs_newlines_and_case():
    text = "Hello, World! it's\tTAB\nnew-line (x@y.com) [a]_b`c{d}~e"
    expected = ["hello", "world", "it's", "tab", "new", "line", "x", "y", "com", "a", "b", "c", "d", "e"]
    assert list(vectorizer.KerasTokenizer().fit_on_texts([text]).word_counts) == expected
    assert keras_text().text_to_word_sequence(text) == expected  # The hand-worked tokens are Keras' own.


def test_keras2_splits_on_space_only_so_other_whitespace_stays_in_tokens():
    # Keras splits on " " after translating the filters (tab, newline among them); \r, \v, \f, \xa0 stay.
    texts = ["a\rb c\xa0d  e\x0bf\x0cg", "É\x1ch"]
    expected = [["a\rb", "c\xa0d", "e\x0bf\x0cg"], ["é\x1ch"]]
    tokenizer = vectorizer.KerasTokenizer().fit_on_texts(texts)
    assert list(tokenizer.word_counts) == ["a\rb", "c\xa0d", "e\x0bf\x0cg", "é\x1ch"]
    assert tokenizer.texts_to_sequences(texts) == [[1, 2, 3], [4]]
    # The hand-worked tokens are Keras' own.
    assert [keras_text().text_to_word_sequence(text) for text in texts] == expected


# ---- KerasTokenizer ----

def test_word_index_by_count_with_first_seen_tie_order():
    texts = ["The cat, the DOG!", "dog's day\tout\nthe end", "cat cat"]
    tokenizer = vectorizer.KerasTokenizer().fit_on_texts(texts)
    assert tokenizer.word_counts == {"the": 3, "cat": 3, "dog": 1, "dog's": 1, "day": 1, "out": 1, "end": 1}
    assert list(tokenizer.word_counts) == ["the", "cat", "dog", "dog's", "day", "out", "end"]
    # "the" and "cat" tie at 3: "the" was seen first, so it gets 1.
    assert tokenizer.word_index == {"the": 1, "cat": 2, "dog": 3, "dog's": 4, "day": 5, "out": 6, "end": 7}
    assert tokenizer.document_count == 3
    assert tokenizer.index_word[4] == "dog's"


def test_texts_to_sequences_cuts_at_num_words_and_drops_unknown_words():
    texts = ["The cat, the DOG!", "dog's day\tout\nthe end", "cat cat"]
    tokenizer = vectorizer.KerasTokenizer(num_words=4).fit_on_texts(texts)
    # Keras keeps ids < num_words (1..3): "dog's" (4) and later words are dropped, as is the unseen "zebra".
    assert tokenizer.texts_to_sequences(texts) == [[1, 2, 1, 3], [1], [2, 2]]
    assert tokenizer.texts_to_sequences(["the zebra cat", "", "zebra"]) == [[1, 2], [], []]
    uncut = vectorizer.KerasTokenizer().fit_on_texts(texts)
    assert uncut.texts_to_sequences(["dog's end"]) == [[4, 7]]


def test_fit_on_texts_accumulates_like_keras():
    first, second = ["b a", "a"], ["c c c", "b"]
    together = vectorizer.KerasTokenizer().fit_on_texts(first + second)
    stepwise = vectorizer.KerasTokenizer().fit_on_texts(first).fit_on_texts(second)
    assert list(stepwise.word_counts.items()) == list(together.word_counts.items()) == [("b", 2), ("a", 2), ("c", 3)]
    assert stepwise.word_index == together.word_index == {"c": 1, "b": 2, "a": 3}
    assert stepwise.document_count == 4


def test_tokenizer_rejects_bad_input():
    with pytest.raises(ValueError, match="num_words"):
        vectorizer.KerasTokenizer(num_words=-1)
    with pytest.raises(ValueError, match=r"texts\[1\] is a bytes"):
        vectorizer.KerasTokenizer().fit_on_texts(["fine", b"bytes"])


@pytest.mark.parametrize("num_words", [None, 25])
def test_fast_tokenizer_matches_keras_tokenizer_on_random_texts(num_words):
    texts = random_texts(0, 300, KERAS2_ALPHABET) + ["", "   ", "!!!"]
    unseen = random_texts(1, 50, KERAS2_ALPHABET)
    ours = vectorizer.KerasTokenizer(num_words=num_words).fit_on_texts(texts[:200]).fit_on_texts(texts[200:])
    keras = keras_text().Tokenizer(num_words=num_words)
    keras.fit_on_texts(texts[:200])
    keras.fit_on_texts(texts[200:])
    assert list(ours.word_counts.items()) == list(keras.word_counts.items())
    assert list(ours.word_index.items()) == list(keras.word_index.items())
    assert ours.index_word == keras.index_word
    assert ours.document_count == keras.document_count == 303
    # Unseen texts hold words outside the index: both drop them.
    assert ours.texts_to_sequences(texts + unseen) == keras.texts_to_sequences(texts + unseen)


# ---- pad_flat (Keras pad_sequences on concatenated sequences) ----

def pad_lists(sequences, maxlen, **options):
    lengths = np.asarray([len(sequence) for sequence in sequences], dtype=np.int64)
    flat = np.asarray([token for sequence in sequences for token in sequence], dtype=np.int64)
    return padding.pad_flat(flat, lengths, maxlen, **options)


@pytest.mark.parametrize(("padding", "truncating", "expected"), [
    ("pre", "pre", [[2, 3], [0, 4], [0, 0]]),
    ("post", "pre", [[2, 3], [4, 0], [0, 0]]),
    ("pre", "post", [[1, 2], [0, 4], [0, 0]]),
    ("post", "post", [[1, 2], [4, 0], [0, 0]]),
])
def test_pad_flat_padding_and_truncating(padding, truncating, expected):
    padded = pad_lists([[1, 2, 3], [4], []], 2, padding=padding, truncating=truncating)
    assert padded.dtype == np.int32
    assert padded.tolist() == expected


def test_pad_flat_defaults_are_keras_defaults():
    assert pad_lists([[5, 6, 7, 8], [9]], 3).tolist() == [[6, 7, 8], [0, 0, 9]]  # pre-truncation and pre-padding
    assert pad_lists([[1]], 3, value=-1).tolist() == [[-1, -1, 1]]
    assert pad_lists([], 4).shape == (0, 4)


@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("truncating", ["pre", "post"])
def test_pad_flat_matches_keras_pad_sequences_on_random_lengths(padding, truncating):
    generator = random.Random(2)
    sequences = [[generator.randint(1, 99) for _ in range(generator.randint(0, 12))] for _ in range(200)]
    expected = keras_pad_sequences()(sequences, maxlen=7, padding=padding, truncating=truncating, value=-3)
    padded = pad_lists(sequences, 7, padding=padding, truncating=truncating, value=-3)
    assert padded.dtype == expected.dtype == np.int32
    assert np.array_equal(padded, expected)


def test_pad_flat_rejects_unknown_modes():
    with pytest.raises(ValueError, match="padding='middle'"):
        pad_lists([[1]], 2, padding="middle")
    with pytest.raises(ValueError, match="truncating='both'"):
        pad_lists([[1]], 2, truncating="both")


# ---- TextVectorizer2020 ----

def test_text_vectorizer_2020_hand_worked():
    layer = vectorizer.TextVectorizer2020(max_tokens=5, output_sequence_length=4)
    layer.adapt(["b a a", "c b", "It's C!"])
    # Counts: a 2, b 2, c 2, its 1 ("It's" -> "its"); ties: the larger token first; max_tokens keeps 3 words.
    assert layer.get_vocabulary() == ["", "[UNK]", "c", "b", "a"]
    assert layer(["a b c its zebra", "A"]).tolist() == [[4, 3, 2, 1], [4, 0, 0, 0]]


def test_text_vectorizer_2020_lowercases_ascii_only_and_splits_on_ascii_whitespace():
    text = "ÉCOLE École x\xa0y z\x0bq\x1cw it's e-mail"
    layer = vectorizer.TextVectorizer2020(max_tokens=None, output_sequence_length=8).adapt([text])
    # "École" twice, then the tokens seen once, the larger first.
    assert layer.get_vocabulary() == ["", "[UNK]", "École", "z", "x\xa0y", "q\x1cw", "its", "email"]
    assert layer([text]).tolist() == [[2, 2, 4, 3, 5, 6, 7, 0]]


def test_text_vectorizer_2020_matches_keras_text_vectorization():
    keras = pytest.importorskip("keras")
    generator = random.Random(1)
    alphabet = list("abcdeABÉé'.,-!") + [" ", " ", " ", "\t", "\n", "\r", "\x0b", "\xa0", "\x1c"]
    train = ["".join(generator.choice(alphabet) for _ in range(generator.randint(0, 40))) for _ in range(200)]
    test = ["".join(generator.choice(alphabet) for _ in range(generator.randint(0, 40))) for _ in range(50)]
    for max_tokens, length in ((30, 12), (None, 40)):
        layer = keras.layers.TextVectorization(max_tokens=max_tokens, output_sequence_length=length)
        layer.adapt(train)
        ours = vectorizer.TextVectorizer2020(max_tokens=max_tokens, output_sequence_length=length).adapt(train)
        assert ours.get_vocabulary() == [str(word) for word in layer.get_vocabulary()]
        expected = np.asarray(layer(np.array([[text] for text in train + test], dtype=object)))
        assert np.array_equal(ours(train + test), expected)


# ---- vectorize ----

@pytest.mark.parametrize(("num_words", "length"), [(20, LENGTH), (100000, 160)])
def test_vectorize_keras2_matches_keras_tokenizer_and_pad_sequences(num_words, length):
    # Long texts with more spaces, so that both cuts leave some rows over the length and some under it.
    texts = random_texts(3, 240, KERAS2_ALPHABET + [" "] * 4, longest=2000)
    result = vectorizer.vectorize(small_config(max_num_words=num_words, max_sequence_length=length),
                                  texts[:180], texts[180:])
    # The blog: Tokenizer(num_words=MAX_NB_WORDS).fit_on_texts(texts), texts_to_sequences, pad_sequences.
    tokenizer = keras_text().Tokenizer(num_words=num_words)
    tokenizer.fit_on_texts(texts)
    sequences = tokenizer.texts_to_sequences(texts)
    assert max(map(len, sequences)) > length and min(map(len, sequences)) < length  # truncated and padded rows
    expected = keras_pad_sequences()(sequences, maxlen=length)
    assert list(result.word_index.items()) == list(tokenizer.word_index.items())
    assert np.array_equal(np.concatenate([result.x_train, result.x_val]), expected)


def test_vectorize_keras2_fits_on_train_and_val():
    train = ["apple banana apple", "banana cherry"]
    val = ["durian durian durian durian"]
    result = vectorizer.vectorize(small_config(max_num_words=10), train, val)
    # Blog: tokenizer.fit_on_texts(texts) before the split, so the val-only word is indexed (and ranks first).
    assert result.word_index == {"durian": 1, "apple": 2, "banana": 3, "cherry": 4}
    assert result.x_train.dtype == result.x_val.dtype == np.int32
    assert result.x_train.tolist() == [pre([2, 3, 2]), pre([3, 4])]
    assert result.x_val.tolist() == [pre([1, 1, 1, 1])]
    assert (result.num_words, result.vocabulary_size) == (10, 4)


def test_vectorize_keras2_num_words_cut_and_pre_truncation():
    # w0, w1, w5 occur twice (ids 1, 2, 3 in first-seen order), the rest once: w2 -> 4, w3 -> 5, w4 -> 6,
    # then w6 -> 7 ... w159 -> 160.
    train = [" ".join(f"w{position}" for position in range(160)), "w1 w0 w5"]
    whole = vectorizer.vectorize(small_config(max_num_words=200), train, [])
    assert whole.x_train.tolist() == [list(range(12, 161)), pre([2, 1, 3])]  # the last 149 tokens are kept
    # num_words=3 keeps ids 1 and 2 (w0, w1) only.
    cut = vectorizer.vectorize(small_config(max_num_words=3), train, [])
    assert cut.x_train.tolist() == [pre([1, 2]), pre([2, 1])]
    assert cut.vocabulary_size == whole.vocabulary_size == 160
    assert cut.x_val.shape == (0, LENGTH)


def test_vectorize_keras2_fit_order_sets_tie_order_and_keeps_row_order():
    train, val = ["beta"], ["alpha"]
    default = vectorizer.vectorize(small_config(), train, val)
    corpus_order = vectorizer.vectorize(small_config(), train, val, fit_order=[1, 0])
    assert default.word_index == {"beta": 1, "alpha": 2}
    assert corpus_order.word_index == {"alpha": 1, "beta": 2}
    assert corpus_order.x_train.tolist() == [pre([2])] and corpus_order.x_val.tolist() == [pre([1])]
    with pytest.raises(ValueError, match="permutation"):
        vectorizer.vectorize(small_config(), train, val, fit_order=[0, 0])


def test_vectorize_kerasio2020_adapts_on_train_only():
    train = ["apple banana apple", "banana cherry"]
    val = ["durian apple"]
    result = vectorizer.vectorize(small_config(vectorizer="kerasio2020", max_num_words=10), train, val)
    assert result.word_index == {"": 0, "[UNK]": 1, "banana": 2, "apple": 3, "cherry": 4}
    assert result.x_train.tolist() == [post([3, 2, 3]), post([2, 4])]
    assert result.x_val.tolist() == [post([1, 3])]  # durian was never adapted: OOV
    assert result.vocabulary_size == 5


def test_vectorize_kerasio2020_post_truncation():
    train = [" ".join(f"w{position:03d}" for position in range(160))]
    result = vectorizer.vectorize(small_config(vectorizer="kerasio2020", max_num_words=1000), train, [])
    # All counts tie at 1: the larger token first, so w159 -> 2 ... w000 -> 161; the first 149 tokens stay.
    assert result.x_train.tolist() == [list(range(161, 161 - LENGTH, -1))]


def read_19997(shared_data):
    documents = []
    with tarfile.open(shared_data / "20news-19997.tar.gz") as archive:
        for member in archive:
            if member.isfile():
                documents.append((member.name, archive.extractfile(member).read().decode("latin-1")))
    return [text for _, text in sorted(documents)]


@pytest.mark.slow
def test_vectorize_19997_equals_keras_reference(shared_data):
    texts = read_19997(shared_data)
    assert len(texts) == 19997
    config = config_module.TrainerConfig(vectorizer="keras2")
    result = vectorizer.vectorize(config, texts[:15000], texts[15000:])
    # The blog's pipeline with Keras' own Tokenizer (MAX_NB_WORDS = 20000, MAX_SEQUENCE_LENGTH = 1000).
    tokenizer = keras_text().Tokenizer(num_words=20000)
    tokenizer.fit_on_texts(texts)
    assert list(result.word_index.items()) == list(tokenizer.word_index.items())
    expected = keras_pad_sequences()(tokenizer.texts_to_sequences(texts), maxlen=1000)
    assert np.array_equal(np.concatenate([result.x_train, result.x_val]), expected)
    assert result.x_train.shape == (15000, 1000)
    assert int(result.x_train.max()) == 19999
