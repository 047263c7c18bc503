"""Baselines every student is compared with: a TF-IDF bag-of-words MLP, and the same GNN trained
on labels only (no teacher). Published work shows bag-of-words MLPs match many text GNNs, so a
graph student has to beat this row to justify its graph."""
from __future__ import annotations

import torch
from torch import nn

from trainers.distill.loop import metrics


def gnn_baseline_config(cfg):
    """The student architecture, CE only, no teacher signal (no curriculum, no teacher embeddings)."""
    return cfg.model_copy(update={"student": cfg.student.model_copy(update={"init_from_teacher": False}),
                                  "distill": cfg.distill.model_copy(update={"use_teacher": False})})


class BowMLP(nn.Module):
    """TF-IDF (log counts x idf, L2-normalised) -> hidden -> labels."""

    def __init__(self, vocab_size: int, hidden: int, num_labels: int, idf: torch.Tensor):
        super().__init__()
        self.register_buffer("idf", idf)
        self.net = nn.Sequential(nn.Linear(vocab_size, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, num_labels))
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


def train_bow(train, val, vocab_size: int, num_labels: int, hidden: int, epochs: int, seed: int = 0):
    """train/val: lists of Data (x_tok, y). Returns the model at its best validation epoch."""
    torch.manual_seed(seed)
    df = torch.zeros(vocab_size)
    for d in train:
        df[torch.unique(d.x_tok)] += 1
    idf = torch.log((1 + len(train)) / (1 + df)) + 1
    model = BowMLP(vocab_size, hidden, num_labels, idf)
    xtr, ytr = model.featurize([d.x_tok for d in train]), torch.cat([d.y for d in train])
    xva, yva = model.featurize([d.x_tok for d in val]), torch.cat([d.y for d in val])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    best, best_state, history = -1.0, None, []
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            opt.zero_grad(); nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]).backward(); opt.step()
        model.eval()
        with torch.no_grad():
            pred = model(xva).argmax(-1).numpy()
        m = metrics(pred, yva.numpy(), pred, num_labels, False)
        history.append({"epoch": epoch, **{f"val_{k}": v for k, v in m.items()}})
        if m["accuracy"] > best:
            best, best_state = m["accuracy"], {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model.eval(), history
