"""trainer.vectorizer: Keras 2 Tokenizer / pad_sequences fidelity, the 2020 TextVectorization mimic, vectorize()."""

from __future__ import annotations

import random
import tarfile
from collections import OrderedDict

import numpy as np
import pytest

from trainer import config as config_module
from trainer import vectorizer


# A line-by-line port of keras_preprocessing/text.py (Keras 2.x) with the defaults, as the oracle.
def reference_words(text):
    text = text.lower().translate(str.maketrans({c: " " for c in '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'}))
    return [word for word in text.split(" ") if word]


def reference_fit(texts):
    word_counts = OrderedDict()
    for text in texts:
        for word in reference_words(text):
            word_counts[word] = word_counts.get(word, 0) + 1
    ranked = sorted(word_counts.items(), key=lambda item: item[1], reverse=True)
    return word_counts, {word: index for index, (word, _) in enumerate(ranked, start=1)}


def reference_sequences(word_index, texts, num_words):
    sequences = []
    for text in texts:
        ids = [word_index.get(word) for word in reference_words(text)]
        sequences.append([i for i in ids if i is not None and not (num_words and i >= num_words)])
    return sequences


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
    assert vectorizer.keras2_words(text) == ["hello", "world", "it's", "tab", "new", "line", "x", "y", "com",
                                             "a", "b", "c", "d", "e"]


def test_keras2_splits_on_space_only_so_other_whitespace_stays_in_tokens():
    # Keras splits on " " after translating the filters (tab, newline among them); \r, \v, \f, \xa0 stay.
    texts = ["a\rb c\xa0d  e\x0bf\x0cg", "É\x1ch"]
    expected = [["a\rb", "c\xa0d", "e\x0bf\x0cg"], ["é\x1ch"]]
    assert [vectorizer.keras2_words(text) for text in texts] == expected
    tokenizer = vectorizer.KerasTokenizer().fit_on_texts(texts)
    assert list(tokenizer.word_counts) == ["a\rb", "c\xa0d", "e\x0bf\x0cg", "é\x1ch"]
    assert tokenizer.texts_to_sequences(texts) == [[1, 2, 3], [4]]


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


def test_fast_tokenizer_matches_reference_port_on_random_texts():
    # Every kind of character the fast path treats specially: all whitespace, the punctuation used as
    # placeholders and document separator, Latin-1 and private-use characters, uppercase.
    alphabet = list("abcAB'!#-.") + [" ", " ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\u2003",
                                     "É", "ß", "\ue000", "\ue0ff"]
    generator = random.Random(0)
    texts = ["".join(generator.choice(alphabet) for _ in range(generator.randint(0, 60))) for _ in range(300)]
    texts += ["", "   ", "!!!"]
    tokenizer = vectorizer.KerasTokenizer(num_words=25).fit_on_texts(texts)
    word_counts, word_index = reference_fit(texts)
    assert list(tokenizer.word_counts.items()) == list(word_counts.items())
    assert list(tokenizer.word_index.items()) == list(word_index.items())
    assert tokenizer.texts_to_sequences(texts) == reference_sequences(word_index, texts, 25)


# ---- pad_sequences ----

@pytest.mark.parametrize(("padding", "truncating", "expected"), [
    ("pre", "pre", [[2, 3], [0, 4], [0, 0]]),
    ("post", "pre", [[2, 3], [4, 0], [0, 0]]),
    ("pre", "post", [[1, 2], [0, 4], [0, 0]]),
    ("post", "post", [[1, 2], [4, 0], [0, 0]]),
])
def test_pad_sequences_padding_and_truncating(padding, truncating, expected):
    padded = vectorizer.pad_sequences([[1, 2, 3], [4], []], maxlen=2, padding=padding, truncating=truncating)
    assert padded.dtype == np.int32
    assert padded.tolist() == expected


def test_pad_sequences_defaults_are_keras_defaults():
    padded = vectorizer.pad_sequences([[5, 6, 7, 8], [9]], maxlen=3)
    assert padded.tolist() == [[6, 7, 8], [0, 0, 9]]  # pre-truncation and pre-padding
    assert vectorizer.pad_sequences([[1, 2, 3], [4]]).tolist() == [[1, 2, 3], [0, 0, 4]]  # maxlen: longest
    assert vectorizer.pad_sequences([[1]], maxlen=3, value=-1).tolist() == [[-1, -1, 1]]
    assert vectorizer.pad_sequences([], maxlen=4).shape == (0, 4)


def test_pad_sequences_rejects_unknown_modes():
    with pytest.raises(ValueError, match="padding='middle'"):
        vectorizer.pad_sequences([[1]], maxlen=2, padding="middle")
    with pytest.raises(ValueError, match="truncating='both'"):
        vectorizer.pad_sequences([[1]], maxlen=2, truncating="both")


# ---- TextVectorizer2020 ----

def test_text_vectorizer_2020_hand_worked():
    layer = vectorizer.TextVectorizer2020(max_tokens=5, output_sequence_length=4)
    layer.adapt(["b a a", "c b", "It's C!"])
    # Counts: a 2, b 2, c 2, its 1 ("It's" -> "its"); ties: the larger token first; max_tokens keeps 3 words.
    assert layer.get_vocabulary() == ["", "[UNK]", "c", "b", "a"]
    assert layer(["a b c its zebra", "A"]).tolist() == [[4, 3, 2, 1], [4, 0, 0, 0]]


def test_text_vectorizer_2020_lowercases_ascii_only_and_splits_on_ascii_whitespace():
    assert vectorizer.kerasio2020_words("ÉCOLE École x\xa0y z\x0bq\x1cw it's e-mail") == \
        ["École", "École", "x\xa0y", "z", "q\x1cw", "its", "email"]
    layer = vectorizer.TextVectorizer2020(max_tokens=None).adapt(["ÉCOLE École x\xa0y z\x0bq\x1cw"])
    assert layer.get_vocabulary() == ["", "[UNK]", "École", "z", "x\xa0y", "q\x1cw"]


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
    word_counts, word_index = reference_fit(texts)
    assert list(result.word_index.items()) == list(word_index.items())
    expected = vectorizer.pad_sequences(reference_sequences(word_index, texts, 20000), maxlen=1000)
    assert np.array_equal(np.concatenate([result.x_train, result.x_val]), expected)
    assert result.x_train.shape == (15000, 1000)
    assert int(result.x_train.max()) == 19999
