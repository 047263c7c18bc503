"""The teacher's forward pass on a batch of windows: the one path fine-tune validation and the
teacher-logits stage run (a plain model or a ZeRO-3 engine's module), with its padding rule and the
causal-lm verbalizer (label words whose next-token logits stand in for a classification head).
"""
from __future__ import annotations

import numpy as np


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
