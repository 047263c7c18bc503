"""Latency columns of the evaluate table, milliseconds per document on one thread: model only (on
prepared inputs) and end to end from raw text (students through serving's Predictor, the teacher
through its tokenizer and windows, bag-of-words through the spaCy tokenizer)."""
from __future__ import annotations

import time
from typing import Any, Callable

import torch

BATCH = 64  # the batch of the *_b64 columns: a throughput-oriented deployment's batch


def _timed(fn: Callable[[], Any], n_docs: int, repeat: int = 1) -> float:
    """Milliseconds per document (best of ``repeat``)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t0)
    return 1000 * best / max(n_docs, 1)


def student_latency(model, datas, texts, enc, builder, predictor: Callable) -> dict[str, float]:
    """Model-only latency on prepared graphs, and end to end from raw text through ``predictor``
    (serving's Predictor class, handed in by the composition root: trainers never import serving)."""
    from torch_geometric.data import Batch

    model.eval()
    b1 = [Batch.from_data_list([d]) for d in datas]
    b64 = [Batch.from_data_list(datas[i:i + BATCH]) for i in range(0, len(datas), BATCH)]

    def run(batches):
        with torch.no_grad():
            for b in batches:
                model(b)

    predictor = predictor(model, enc, builder)  # raw text -> graph -> student: the deployed path
    run(b1[:5])
    return {"latency_ms_b1": _timed(lambda: run(b1), len(b1)), "latency_ms_b64": _timed(lambda: run(b64), len(datas)),
            "e2e_latency_ms_b1": _timed(lambda: predictor.predict_logits(texts, batch_size=1), len(texts)),
            "e2e_latency_ms_b64": _timed(lambda: predictor.predict_logits(texts, batch_size=BATCH), len(texts))}


def teacher_latency(model, win, pad_id: int, texts: list[str], n_lat: int) -> dict[str, float]:
    """Model-only latency on pre-cut windows of ``n_lat`` texts, and end to end (tokenise + windows +
    forward) on a quarter of them; logits only, what a deployed teacher computes."""
    from trainers.teacher.inference import pad_batch

    def windows(text):
        e = win.encode([text])[0]
        return [win.wrap(e.ids[a:b]) for a, b in e.windows]

    def forward(seqs):  # logits only: what a deployed teacher computes
        ids, mask = pad_batch(seqs, pad_id)
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask)[0]  # head logits, or pooled-over states (pair)

    pre = [windows(x) for x in texts[:n_lat]]
    forward(pre[0])
    flat = [w for p in pre for w in p]
    e2e = texts[: max(1, n_lat // 4)]
    return {"latency_ms_b1": _timed(lambda: [forward(p) for p in pre], len(pre)),
            "latency_ms_b64": _timed(lambda: [forward(flat[i:i + BATCH]) for i in range(0, len(flat), BATCH)],
                                     len(pre)),
            "e2e_latency_ms_b1": _timed(lambda: [forward(windows(x)) for x in e2e], len(e2e)),
            "e2e_latency_ms_b64": _timed(lambda: [forward([w for x in e2e[i:i + BATCH] for w in windows(x)])
                                                  for i in range(0, len(e2e), BATCH)], len(e2e))}


def bow_latency(bow, tokens: list[torch.Tensor], texts: list[str], vocab: list[str], tokenizer) -> dict[str, float]:
    """Model-only latency per document on word ids (featurised + forward), and end to end from raw
    text (spaCy tokenizer + features + model)."""
    w = {t: i for i, t in enumerate(vocab)}

    def e2e(batch: int):
        with torch.no_grad():
            for i in range(0, len(texts), batch):
                ids = [torch.tensor([w.get(tok.lower_, 1) for tok in doc if not tok.is_space], dtype=torch.long)
                       for doc in tokenizer.pipe(texts[i:i + batch])]
                bow(bow.featurize(ids))

    xs1 = [bow.featurize([t]) for t in tokens]
    xs64 = [bow.featurize(tokens[i:i + BATCH]) for i in range(0, len(tokens), BATCH)]
    with torch.no_grad():
        out = {"latency_ms_b1": _timed(lambda: [bow(x) for x in xs1], len(tokens)),
               "latency_ms_b64": _timed(lambda: [bow(x) for x in xs64], len(tokens))}
    out["e2e_latency_ms_b1"] = _timed(lambda: e2e(1), len(texts))
    out["e2e_latency_ms_b64"] = _timed(lambda: e2e(BATCH), len(texts))
    return out
