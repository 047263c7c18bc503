"""One small trained student in a run directory, shared by the serving tests (export, predict).

Real pieces only: texts parsed by the real spaCy graph builder, a real ``Student`` trained for a
few dozen CE steps (seconds) to separate two word lists, saved with the checkpoint code the
distill stage uses, and a run config YAML that `tgd export` reads. Built once per test session
(the directory is reused when it exists), so each test module pays nothing after the first.
"""
from __future__ import annotations

import random
from pathlib import Path

GOOD = ["wonderful", "moving", "brilliant", "funny", "charming", "warm", "sharp", "great", "lovely", "clever"]
BAD = ["dull", "boring", "awful", "tedious", "lazy", "bland", "clumsy", "weak", "messy", "flat"]
NOUNS = ["film", "story", "cast", "script", "ending", "plot", "music", "director", "scene", "dialogue"]
LABELS = ["neg", "pos"]
NODE_BUDGET = 64  # small, so the long test documents are predicted from many parts


def sentence(rng: random.Random, label: int) -> str:
    words = GOOD if label else BAD
    return f"The {rng.choice(NOUNS)} was {rng.choice(words)} and the {rng.choice(NOUNS)} felt {rng.choice(words)}."


def document(rng: random.Random, label: int, sentences: int, punctuation: bool = True) -> str:
    text = " ".join(sentence(rng, label) for _ in range(sentences))
    return text if punctuation else text.replace(".", "").replace(",", "").lower()


def corpus(n: int, seed: int = 0, sentences: tuple[int, int] = (1, 3)) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [(document(rng, y, rng.randint(*sentences)), y) for y in (rng.randint(0, 1) for _ in range(n))]


def small_run(root: Path, builder) -> Path:
    """Train (once) and save the student of a run rooted at ``root``; -> its config YAML."""
    config = root / "config.yaml"
    if config.is_file():
        return config
    import torch
    from torch_geometric.data import Batch

    from tgd.config import RunConfig, dump_yaml
    from tgd.schema import stage_dir
    from trainers.student.checkpoint import build_student, save_student
    from trainers.student.features import GraphEncoding

    cfg = RunConfig.model_validate({"run_dir": str(root / "run"), "distill": {"node_budget": NODE_BUDGET},
                                    "student": {"hidden": 16, "pos_dim": 8, "heads": 2, "layers": 2}})
    train = corpus(120, seed=1)
    graphs = builder.build([t for t, _ in train])
    words = sorted({w for g in graphs for w in g["lower"]})
    rels = sorted({r for g in graphs for r in g["dep_rel"]})
    enc = GraphEncoding(["<pad>", "<unk>", *words], rels + ["<other>"], LABELS)
    torch.manual_seed(0)
    model = build_student(enc, cfg.student, "classification")
    batch = Batch.from_data_list([enc.encode(g) for g in graphs])
    y = torch.tensor([label for _, label in train])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(batch)[0], y).backward()
        opt.step()
    model.eval()
    out = stage_dir(cfg, "distill")
    out.mkdir(parents=True, exist_ok=True)
    save_student(out / "student.pt", model.state_dict(), enc, cfg.student, "classification", {"best_epoch": 39})
    config.write_text(dump_yaml(cfg))
    return config
