"""Learning curves of one student: losses and validation scores per epoch, each epoch shaded by its
curriculum stage."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from trainers.distill.curriculum import STAGES


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    for key in ("loss", "loss_ce", "loss_kd", "loss_bridge"):
        if any(key in h for h in history):
            ax[0].plot(ep, [h.get(key, np.nan) for h in history], marker="o", label=key)
    for key in ("val_accuracy", "val_macro_f1", "val_spearman", "val_pearson", "val_agreement"):
        if any(key in h for h in history):
            ax[1].plot(ep, [h.get(key, np.nan) for h in history], marker="o", label=key)
    for a in ax:
        for h in history:
            a.axvspan(h["epoch"] - 0.5, h["epoch"] + 0.5, color=STAGES[h["stage"]].colour, zorder=0)
        a.legend(fontsize=7)
        a.set_xlabel("epoch (shading: align / fusion / adaptive stage)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
