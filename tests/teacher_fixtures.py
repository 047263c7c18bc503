"""Tiny teachers built from a config and a hand-written vocabulary (no downloads), and a tiny corpus."""
from __future__ import annotations

import json
from pathlib import Path

WORDS = ("the a an and of to is was were film movie actor actors great dull fine good bad plot story "
         "review it this that not very but with for on in un believ able ##s ##ed ##ing ##ly ##able ##believ "
         "! , . ' ? : - label text fresh rotten").split()


def write_vocab(path: Path) -> Path:
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + chars + ["##" + c for c in chars]
    seen, out = set(), []
    for v in vocab:
        if v not in seen:
            seen.add(v)
            out.append(v)
    path.write_text("\n".join(out) + "\n")
    return path


def tiny_tokenizer(path: Path):
    """A WordPiece tokenizer over WORDS + characters, saved into ``path`` (a fast tokenizer: offsets)."""
    from transformers import BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    tok = BertTokenizer(vocab=str(write_vocab(path / "vocab.txt")), do_lower_case=True)
    tok.save_pretrained(str(path))
    return tok


def tiny_bert(path: Path, labels: list[str] | None = None, seed: int = 0, max_positions: int = 64) -> Path:
    """A 2-layer 32-wide random BERT (sequence-classification head when ``labels`` is given)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    tok = tiny_tokenizer(path)
    torch.manual_seed(seed)
    kw = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
              intermediate_size=64, max_position_embeddings=max_positions)
    if labels:
        cfg = BertConfig(**kw, num_labels=len(labels), id2label=dict(enumerate(labels)),
                         label2id={l: i for i, l in enumerate(labels)})
        BertForSequenceClassification(cfg).save_pretrained(str(path))
    else:
        BertModel(BertConfig(**kw)).save_pretrained(str(path))
    return path


def review_corpus(path: Path, n: int = 47) -> Path:
    """Classification rows; n deliberately not divisible by 2 workers or the batch sizes used."""
    rows = []
    for i in range(n):
        good = i % 3 != 0
        extra = " and the plot was very good" * (i % 5 == 0) * 4  # a few long documents -> several windows
        rows.append({"text": f"Review {i}: the film was {'great' if good else 'dull'}, unbelievable!{extra}",
                     "label": "fresh" if good else "rotten"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
