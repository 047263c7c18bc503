"""The teacher's knowledge in the student's vocabulary: initial word vectors distilled from the teacher.

Two recipes, ``student.init_vectors`` (the default: ``input_embeddings``; ``teacher_forward`` measured
level with it, docs/RESULTS.md):

- ``teacher_forward`` (the model2vec recipe, Tulkens & van Dongen 2024): every vocabulary word is
  passed through the teacher alone (``[CLS] word [SEP]``), its last-layer states mean-pooled, and the
  matrix reduced by PCA to the student's width. The vector is where the (fine-tuned, when there is
  one) teacher puts the word: its context-free reading after every layer, so a word the fine-tuned
  teacher finds positive starts near the other positive words. model2vec itself is not used: its
  ``distill`` extra pins an older transformers than the project's, and the recipe is a forward pass.
- ``input_embeddings``: the teacher's input embedding table averaged over each word's sub-words, then
  PCA: cheaper (no forward), but what the layers learned is not in it.

Either way the vectors are rescaled to ``INIT_STD`` (the scale of the random embeddings the rest of
the student is initialised against) and the padding row is zero.

``static_word_vectors`` is the frozen table of the student's static path (``student.static_path``):
the ``input_embeddings`` vectors weighted by the word's training-split frequency (SIF, Arora et al.
2017), so a side's sum of them is the frequency-weighted mean model2vec computes.

A trained student's vocabulary-indexed tables (``VOCAB_TABLES``) grow together (``grow_state``): a
word it never saw gets a row in each, mapped from the teacher's static vectors.
"""
from __future__ import annotations

from typing import Sequence

import torch

from trainers.student.features import PAD

# Teacher-initialised word vectors are rescaled to this standard deviation: the scale of the small
# random embeddings the rest of the student is initialised against, so the input layer and LayerNorm
# see the same range either way.
INIT_STD = 0.1
# SIF's smoothing constant (Arora et al. 2017): a word rarer than this keeps nearly its full weight in a
# weighted mean, a frequent one counts less (model2vec uses the same weighting)
SIF_A = 1e-3
# the student's weights with one row per vocabulary entry: grown together when words are added
VOCAB_TABLES = ("word.weight", "static.weight")
FORWARD_BATCH = 512  # words per teacher forward: single words are a few sub-words long
SPECIAL = ("<pad>", "<unk>")


def pca(m: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """Rows of ``m`` centred and projected on their top ``dim`` principal axes (zero-padded if the
    vocabulary or the teacher is narrower), rescaled to ``INIT_STD``."""
    m = m - m.mean(0, keepdim=True)
    q = min(dim, *m.shape)  # PCA rank is bounded by the vocabulary size too (tiny corpora)
    if q < m.shape[1]:
        torch.manual_seed(seed)
        _, _, v = torch.pca_lowrank(m, q=q, center=False)
        m = m @ v[:, :q]
    if dim > m.shape[1]:
        m = torch.cat([m, torch.zeros(m.shape[0], dim - m.shape[1])], 1)
    return m / (m.std() + 1e-8) * INIT_STD


@torch.no_grad()
def pooled_states(model, sequences: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """(sequences, teacher width): each short id sequence through the teacher alone, its last-layer
    states mean-pooled (the recipe's core, shared with evaluate's model2vec peer)."""
    out = torch.zeros(len(sequences), model.config.hidden_size)
    for k in range(0, len(sequences), FORWARD_BATCH):
        part = sequences[k:k + FORWARD_BATCH]
        width = max(len(s) for s in part)
        ids = torch.full((len(part), width), pad_id, dtype=torch.long)
        mask = torch.zeros(len(part), width, dtype=torch.long)
        for i, s in enumerate(part):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        h = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        m = mask.unsqueeze(-1).float()
        out[k:k + len(part)] = (h * m).sum(1) / m.sum(1).clamp(min=1)
    return out


def forward_vectors(vocab: Sequence[str], model, tok) -> torch.Tensor:
    """(words, teacher width): each word through the teacher alone (with its special tokens), its
    last-layer states averaged (``<pad>`` / ``<unk>`` rows are zero)."""
    out = torch.zeros(len(vocab), model.config.hidden_size)
    idx = [i for i, w in enumerate(vocab) if w not in SPECIAL]
    seqs = [tok(vocab[i], truncation=True, max_length=16)["input_ids"] for i in idx]
    if idx:
        out[idx] = pooled_states(model, seqs, tok.pad_token_id)
    return out


def input_vectors(vocab: Sequence[str], model, tok) -> torch.Tensor:
    """(words, teacher width): the teacher's input embeddings, averaged over each word's sub-words."""
    emb = model.get_input_embeddings().weight.detach().float()
    rows = []
    for w in vocab:
        ids = tok(w, add_special_tokens=False)["input_ids"] if w not in SPECIAL else []
        rows.append(emb[ids].mean(0) if ids else torch.zeros(emb.shape[1]))
    return torch.stack(rows)


def teacher_word_vectors(vocab: Sequence[str], model_dir: str, dim: int, recipe: str = "input_embeddings",
                         seed: int = 0) -> torch.Tensor:
    """The student's initial word vectors (``len(vocab)`` x ``dim``) from the teacher at ``model_dir``
    by ``recipe`` (module docstring)."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    if recipe == "teacher_forward":
        if tok.pad_token is None:  # decoder teachers: any token pads, the mask hides it
            tok.pad_token = tok.eos_token
        m = forward_vectors(vocab, model, tok)
    elif recipe == "input_embeddings":
        m = input_vectors(vocab, model, tok)
    else:
        raise ValueError(f"unknown word-vector recipe {recipe!r}")
    m = pca(m, dim, seed)
    m[PAD] = 0
    return m


def sif_weights(counts) -> torch.Tensor:
    """SIF weights ``a / (a + p(word))`` of words with these training-split ``counts``."""
    c = torch.as_tensor(counts, dtype=torch.float64)
    return (SIF_A / (SIF_A + c / c.sum().clamp(min=1.0))).float()


def static_word_vectors(vocab: Sequence[str], counts, model_dir: str, dim: int, seed: int = 0) -> torch.Tensor:
    """The static path's frozen table (``len(vocab)`` x ``dim``): the teacher's ``input_embeddings``
    vectors (PCA to ``dim``), each row times its word's SIF weight (``counts``: training-split counts,
    aligned with ``vocab``). ``<pad>`` and ``<unk>`` rows are zero: an unknown word adds nothing to a
    side's sum."""
    m = teacher_word_vectors(vocab, model_dir, dim, "input_embeddings", seed) * sif_weights(counts)[:, None]
    m[[i for i, w in enumerate(vocab) if w in SPECIAL]] = 0
    return m


def ridge_map(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) of the ridge regression y ~ x @ W + b, its penalty chosen by leave-one-out error
    (sklearn's ``RidgeCV``, exact and cheap for a vocabulary-sized fit). ``x`` is scaled to unit
    variance first, so the penalties tried mean the same for any teacher's embedding scale."""
    from sklearn.linear_model import RidgeCV

    scale = float(x.double().std()) or 1.0
    fit = RidgeCV(alphas=(0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)).fit(x.double().numpy() / scale, y.double().numpy())
    return (torch.tensor(fit.coef_.T / scale, dtype=torch.float32),
            torch.tensor(fit.intercept_, dtype=torch.float32))


def unseen_word_vectors(vocab: Sequence[str], trained: torch.Tensor, words: Sequence[str],
                        model_dir: str) -> torch.Tensor:
    """Vectors (``len(words)`` x student width) for words the student never saw, in its trained space.

    The teacher reads every word, the student only its training vocabulary: a ridge map from the
    teacher's static vectors (input embeddings averaged over sub-words, ``input_vectors``) to the
    student's trained word vectors is fitted on the words both know and applied to the new ones, so
    a new word starts where the student puts the words the teacher reads alike, instead of sharing
    the one ``<unk>`` vector. ``vocab``: the student's vocabulary, ``trained`` its embedding matrix."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    known = [i for i, w in enumerate(vocab) if w not in SPECIAL]
    with torch.no_grad():
        w, b = ridge_map(input_vectors([vocab[i] for i in known], model, tok), trained[known].float())
        return input_vectors(list(words), model, tok) @ w + b


def teacher_whole_words(model_dir: str) -> list[str]:
    """The whole words of the teacher's tokenizer vocabulary, lower-cased, sorted: entries that read as a
    word of letters by themselves (WordPiece continuations ``##ing`` do not)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    words = (tok.convert_tokens_to_string([t]).strip().lower() for t in tok.get_vocab())
    return sorted({w for w in words if len(w) > 1 and w.isalpha()})


def grow_state(state: dict[str, torch.Tensor], vocab: Sequence[str], words: Sequence[str], model_dir: str,
               fit_rows: int | None = None) -> dict[str, torch.Tensor]:
    """A student's weights (``state``, vocabulary ``vocab``) with a row for each of ``words`` appended to
    every vocabulary-indexed table it has (``VOCAB_TABLES``), each mapped by ``unseen_word_vectors``
    fitted on the first ``fit_rows`` entries (default: all)."""
    n = len(vocab) if fit_rows is None else fit_rows
    out = dict(state)
    for name in VOCAB_TABLES:
        if name in state and words:
            t = state[name]
            out[name] = torch.cat([t, unseen_word_vectors(vocab[:n], t[:n], words, model_dir).to(t.dtype)])
    return out


def with_teacher_vocabulary(vocab: Sequence[str], state: dict[str, torch.Tensor], model_dir: str
                            ) -> tuple[list[str], dict[str, torch.Tensor]]:
    """``vocab`` + every whole word of the teacher's vocabulary it lacks, and the student's weights
    ``state`` grown by their rows (``grow_state``): the static form of the unseen-word fallback a
    package can carry."""
    known = set(vocab)
    words = [w for w in teacher_whole_words(model_dir) if w not in known]
    return [*vocab, *words], grow_state(state, vocab, words, model_dir)
