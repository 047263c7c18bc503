"""Baselines every student is compared with: the same GNN trained on labels only (no teacher), and
a non-graph model from the words alone, row ``bow``: a TF-IDF bag-of-words MLP for documents, a
window tagger for tokens. Published work shows bag-of-words MLPs match many text GNNs, so a graph
student has to beat this row to justify its graph.

Both non-graph models share one interface: ``featurize(list of word-id tensors) -> x`` (one row per
prediction of the task) and ``forward(x) -> logits``; ``train_baseline`` trains either.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trainers.evaluate.pair_baselines import TfidfCosine
from trainers.tasks import get_task


def gnn_baseline_config(cfg):
    """The student architecture, CE only, no teacher signal (no curriculum, no teacher embeddings, no
    static path of the teacher's vectors), at its own learning rate and schedule (``evaluate.gnn_lr``,
    ``gnn_lr_schedule``): ``distill``'s are chosen with the KD losses on."""
    ev = cfg.evaluate
    return cfg.with_changes({"student.init_from_teacher": False, "student.static_path": False,
                             "distill.use_teacher": False,
                             "distill.lr": ev.gnn_lr or cfg.distill.lr,
                             "distill.lr_schedule": ev.gnn_lr_schedule or cfg.distill.lr_schedule})


# TF-IDF features are wide and sparse: a strong dropout on the hidden layer is the classic regulariser
# for such an MLP (Hinton et al. 2012), and the baseline has no settings of its own to tune.
BOW_DROPOUT = 0.5


class BowMLP(nn.Module):
    """TF-IDF (log counts x idf, L2-normalised) -> hidden -> labels; one row per document."""

    def __init__(self, vocab_size: int, hidden: int, num_labels: int, train_tokens: list[torch.Tensor]):
        super().__init__()
        df = torch.zeros(vocab_size)
        for t in train_tokens:
            df[torch.unique(t)] += 1
        self.register_buffer("idf", torch.log((1 + len(train_tokens)) / (1 + df)) + 1)
        self.net = nn.Sequential(nn.Linear(vocab_size, hidden), nn.ReLU(), nn.Dropout(BOW_DROPOUT),
                                 nn.Linear(hidden, num_labels))
        self.vocab_size = vocab_size

    def featurize(self, token_ids: list[torch.Tensor]) -> torch.Tensor:
        x = torch.zeros(len(token_ids), self.vocab_size)
        for i, t in enumerate(token_ids):
            x[i].index_add_(0, t, torch.ones(len(t)))
        x = torch.log1p(x) * self.idf
        x[:, :2] = 0  # <pad>, <unk>
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)

    def forward(self, x):
        return self.net(x)


class WindowTagger(nn.Module):
    """Each token's word and its ``radius`` neighbours on either side (embeddings, concatenated) ->
    MLP -> tag; one row per token. The bag-of-words equivalent for tagging: context without a graph."""

    def __init__(self, vocab_size: int, hidden: int, num_labels: int, train_tokens=None, dim: int = 64,
                 radius: int = 2):
        super().__init__()
        self.radius = radius
        self.emb = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.net = nn.Sequential(nn.Linear((2 * radius + 1) * dim, hidden), nn.ReLU(), nn.Dropout(0.3),
                                 nn.Linear(hidden, num_labels))

    def featurize(self, token_ids: list[torch.Tensor]) -> torch.Tensor:
        """(tokens of all documents, 2 * radius + 1) word ids; 0 (padding) beyond a document's ends."""
        rows = []
        for t in token_ids:
            padded = nn.functional.pad(t, (self.radius, self.radius))
            rows.append(padded.unfold(0, 2 * self.radius + 1, 1))
        return torch.cat(rows) if rows else torch.zeros(0, 2 * self.radius + 1, dtype=torch.long)

    def forward(self, x):
        return self.net(self.emb(x).flatten(1))


BASELINES = {"graph": BowMLP, "node": WindowTagger, "pair": TfidfCosine}


def train_baseline(task_name: str, train, val, vocab_size: int, labels: list[str], hidden: int, epochs: int,
                   seed: int = 0, batch_size: int = 64):
    """The task's non-graph baseline trained on ``train`` (lists of Data: ``x_tok`` + the task's gold
    targets), returned at its best validation epoch with its history."""
    task = get_task(task_name)
    torch.manual_seed(seed)
    model = BASELINES[task.head](vocab_size, hidden, len(labels), [task.words(d) for d in train])
    headline = task.headline(labels)
    if not getattr(model, "trainable", True):  # nothing to fit (TF-IDF cosine): scored on validation only
        gold = torch.cat([task.gold_and_teacher(d)[0] for d in val]).numpy() if val else np.zeros(0)
        with torch.no_grad():
            pred = task.predictions(model(model.featurize([task.words(d) for d in val]))).numpy()
        return model.eval(), [{"epoch": 0, **{f"val_{k}": v for k, v in task.scores(pred, gold, None, labels).items()}}]

    def xy(datas):
        x = model.featurize([task.words(d) for d in datas])
        y = torch.cat([task.gold_and_teacher(d)[0] for d in datas]) if datas else torch.zeros(0, dtype=torch.long)
        keep = y >= 0
        return x[keep], y[keep]

    (xtr, ytr), (xva, yva) = xy(train), xy(val)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5, fused=True)
    best, best_state, history = -1.0, None, []
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad(); nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]).backward(); opt.step()
        model.eval()
        with torch.no_grad():
            pred = task.predictions(model(xva)).numpy()
        m = task.scores(pred, yva.numpy(), None, labels)
        history.append({"epoch": epoch, **{f"val_{k}": v for k, v in m.items()}})
        if m[headline] > best:
            best, best_state = m[headline], {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model.eval(), history
