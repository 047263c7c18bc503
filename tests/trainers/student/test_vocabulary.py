"""Word vectors from the teacher (trainers/student/vocabulary.py), both recipes on a tiny random BERT:
one row per vocabulary word at the student's width and initial scale, a zero padding row, and the
forward recipe giving what the teacher's layers make of a word, not its input embedding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.fixtures.teacher_fixtures import tiny_bert
from trainers.student.features import PAD
from trainers.student.vocabulary import INIT_STD, teacher_word_vectors

VOCAB = ["<pad>", "<unk>", "the", "film", "was", "great", "dull", "plot", "story", "actor", "movie", "good"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return str(tiny_bert(tmp_path_factory.mktemp("vocab") / "bert", seed=2))


@pytest.mark.parametrize("recipe", ["input_embeddings", "teacher_forward"])
def test_one_scaled_vector_per_word(teacher, recipe):
    m = teacher_word_vectors(VOCAB, teacher, 8, recipe)
    assert m.shape == (len(VOCAB), 8) and torch.all(m[PAD] == 0)
    assert 0.5 * INIT_STD < float(m[2:].std()) < 1.5 * INIT_STD  # the scale of the random embeddings
    assert len({tuple(np.round(r.numpy(), 5)) for r in m[2:]}) == len(VOCAB) - 2  # no two words alike


def test_forward_recipe_is_not_the_input_embeddings(teacher):
    a = teacher_word_vectors(VOCAB, teacher, 8, "input_embeddings")[2:]
    b = teacher_word_vectors(VOCAB, teacher, 8, "teacher_forward")[2:]
    # different geometry, not a rotation of the same: the pairwise cosine structure differs
    cos = lambda m: torch.nn.functional.normalize(m, dim=1) @ torch.nn.functional.normalize(m, dim=1).T  # noqa: E731
    assert (cos(a) - cos(b)).abs().max() > 0.1


def test_unknown_recipe_is_refused(teacher):
    with pytest.raises(ValueError, match="unknown word-vector recipe"):
        teacher_word_vectors(VOCAB, teacher, 8, "glove")


def test_unseen_words_land_where_the_map_from_the_teacher_puts_them(teacher):
    """When the student's trained vectors are a linear image of the teacher's static vectors, the ridge
    map recovers it: a word the student never saw gets (nearly) the vector the same image gives it."""
    from transformers import AutoModel, AutoTokenizer

    from trainers.student.vocabulary import input_vectors, unseen_word_vectors

    tok, model = AutoTokenizer.from_pretrained(teacher), AutoModel.from_pretrained(teacher)
    torch.manual_seed(0)
    image = torch.randn(32, 6)
    known = VOCAB + list("abcdefghijklmnopqrstuvwxyz")  # enough words to fit a 32 -> 6 map
    trained = input_vectors(known, model, tok) @ image
    new = ["review", "fresh", "rotten"]
    got = unseen_word_vectors(known, trained, new, teacher)
    want = input_vectors(new, model, tok) @ image
    assert got.shape == (3, 6) and torch.allclose(got, want, atol=0.05 * float(want.abs().max()))


def test_teacher_vocabulary_adds_whole_words_only(teacher):
    from trainers.student.vocabulary import teacher_whole_words, with_teacher_vocabulary

    words = teacher_whole_words(teacher)
    assert "review" in words and "fresh" in words
    assert all(w.isalpha() and w == w.lower() and len(w) > 1 for w in words)  # no ##pieces, no [CLS]
    state = {"word.weight": torch.randn(len(VOCAB), 4), "static.weight": torch.randn(len(VOCAB), 4),
             "head.0.weight": torch.randn(4, 4)}
    vocab, grown = with_teacher_vocabulary(VOCAB, state, teacher)
    assert set(vocab[len(VOCAB):]) == set(words) - set(VOCAB) and vocab[:len(VOCAB)] == VOCAB
    for name in ("word.weight", "static.weight"):  # every vocabulary table grows; trained rows untouched
        assert grown[name].shape == (len(vocab), 4) and torch.equal(grown[name][:len(VOCAB)], state[name])
    assert not torch.equal(grown["word.weight"][len(VOCAB):], grown["static.weight"][len(VOCAB):])  # own maps
    assert grown["head.0.weight"] is state["head.0.weight"]


def test_static_vectors_weight_frequent_words_down(teacher):
    """The static path's table: the input-embedding vectors times SIF weights, so a word 100 times as
    frequent gets a much shorter row; <pad> and <unk> add nothing."""
    from trainers.student.vocabulary import sif_weights, static_word_vectors, teacher_word_vectors

    counts = [0, 0] + [1000] + [10] * (len(VOCAB) - 3)
    m = static_word_vectors(VOCAB, counts, teacher, 8)
    base = teacher_word_vectors(VOCAB, teacher, 8, "input_embeddings")
    w = sif_weights(counts)
    assert float(w[2]) < 0.1 * float(w[3])
    assert torch.allclose(m[2:], base[2:] * w[2:, None]) and not m[:2].any()
