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


# ------------------------------------------------------------------ token and pair students
TAG_OF = {**{w: "GOOD" for w in GOOD}, **{w: "BAD" for w in BAD}, **{w: "NOUN" for w in NOUNS}}
TAGS = ["BAD", "GOOD", "NOUN", "O"]
PAIR_LABELS = ["different", "same"]


def pair_corpus(n: int, seed: int = 0) -> list[tuple[str, str, int]]:
    """(text, text_b, same sentiment?) triples."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(0, 1), rng.randint(0, 1)
        out.append((document(rng, a, rng.randint(1, 2)), document(rng, b, rng.randint(1, 2)), int(a == b)))
    return out


def small_task_run(root: Path, builder, task: str) -> Path:
    """Like ``small_run`` for the token task (tags GOOD / BAD / NOUN / O per spaCy token) or the
    pair task (labels same / different sentiment, plus the cosine pulled towards the label); a real
    ``Student`` with the task's head, trained with CE for 80 full-batch steps without dropout (with
    dropout 0.3 the pair student stayed at chance, 30 of 60 held-out pairs, for some seeds), saved as
    the distill stage saves it; -> the run's config YAML."""
    config = root / "config.yaml"
    if config.is_file():
        return config
    import torch
    import torch.nn.functional as F
    from torch_geometric.data import Batch

    from tgd.config import RunConfig, dump_yaml
    from tgd.schema import stage_dir
    from trainers.student.checkpoint import build_student, save_student
    from trainers.student.features import GraphEncoding
    from trainers.tasks import get_task

    cfg = RunConfig.model_validate({"run_dir": str(root / "run"), "data": {"task": task},
                                    "distill": {"node_budget": NODE_BUDGET},
                                    "evaluate": {"ablations": []},
                                    "student": {"hidden": 16, "pos_dim": 8, "heads": 2, "layers": 2, "dropout": 0.0}})
    adapter = get_task(task)
    if task == "token":
        rows = [{"text": t} for t, _ in corpus(120, seed=1)]
        labels = TAGS
    else:
        pairs = pair_corpus(120, seed=1)
        rows = [{"text": a, "text_b": b} for a, b, _ in pairs]
        labels = PAIR_LABELS
    grows = adapter.build_inputs(builder, rows)
    graphs = [g for r in grows for g in (r["graph"], r.get("graph_b")) if g is not None]
    words = sorted({w for g in graphs for w in g["lower"]})
    rels = sorted({r for g in graphs for r in g["dep_rel"]})
    enc = GraphEncoding(["<pad>", "<unk>", *words], rels + ["<other>"], labels)
    torch.manual_seed(0)
    model = build_student(enc, cfg.student, task)
    batch = Batch.from_data_list([adapter.encode(enc, g) for g in grows])
    if task == "token":
        y = torch.tensor([TAGS.index(TAG_OF.get(w, "O")) for r in grows for w in r["graph"]["lower"]])

        def loss(out):
            return F.cross_entropy(out, y)
    else:
        y = torch.tensor([same for _, _, same in pairs])

        def loss(out):
            return F.cross_entropy(out[:, 1:], y) + F.mse_loss(out[:, 0], y.float())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(80):
        opt.zero_grad()
        loss(model(batch)[0]).backward()
        opt.step()
    model.eval()
    out = stage_dir(cfg, "distill")
    out.mkdir(parents=True, exist_ok=True)
    save_student(out / "student.pt", model.state_dict(), enc, cfg.student, task, {"best_epoch": 79})
    config.write_text(dump_yaml(cfg))
    return config
