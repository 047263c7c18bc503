"""``student.unseen_words``: the three choices on one trained student (synthetic run, the packaged
teacher's tokenizer vocabulary): unk keeps the training vocabulary, teacher_vocabulary appends the
teacher's whole words without touching the trained rows, auto keeps whichever scores better on the
validation split and says so."""
from __future__ import annotations

import torch

from tests.conftest import make_config
from tests.fixtures.student_data import make_run
from trainers.distill import unseen_words
from trainers.distill.data import prepare
from trainers.distill.loop import train_in_process
from trainers.student.checkpoint import load_student


def test_unseen_word_choices(tmp_path):
    torch.set_num_threads(1)
    student = {"hidden": 32, "heads": 2, "pos_dim": 8, "vocab_min_count": 1}
    distill = {"epochs_align": 0, "epochs_fusion": 2, "epochs_adaptive": 0, "batch_size": 16}
    cfg = make_config(tmp_path, student={**student, "unseen_words": "unk"}, distill=distill, ray={"num_workers": 1})
    make_run(cfg)
    train_in_process(cfg, tmp_path / "s", prepare(cfg, use_teacher=True))
    model, enc, blob = load_student(tmp_path / "s" / "student.pt")
    assert blob["extra"]["unseen_words"] == {"unseen_words": "unk"} and len(enc.vocab) == blob["extra"][
        "training_vocabulary"]
    state = model.state_dict()

    grown_cfg = cfg.with_changes({"student.unseen_words": "teacher_vocabulary"})
    enc2, state2, info = unseen_words.choose(grown_cfg, enc, state)
    assert info["unseen_words"] == "teacher_vocabulary" and len(enc2.vocab) == len(enc.vocab) + info["teacher_words"]
    assert enc2.vocab[:len(enc.vocab)] == enc.vocab and "review" in enc2.vocab[len(enc.vocab):]
    assert torch.equal(state2["word.weight"][:len(enc.vocab)], state["word.weight"])
    assert state2["word.weight"].shape == (len(enc2.vocab), 32)

    lines = []
    enc3, state3, info = unseen_words.choose(cfg.with_changes({"student.unseen_words": "auto"}), enc, state,
                                             lines.append)
    scores = info["validation"]
    want = "teacher_vocabulary" if scores["teacher_vocabulary"] >= scores["unk"] else "unk"
    assert info["unseen_words"] == want and len(enc3.vocab) == (len(enc2.vocab) if want != "unk" else len(enc.vocab))
    assert len(lines) == 1 and "on validation" in lines[0] and want in lines[0]
