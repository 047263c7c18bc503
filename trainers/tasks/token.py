"""Token labelling (POS, NER): one tag per graph node, i.e. per given token.

Pre-tokenised input keeps its tokens, so each gold tag maps to exactly one node. The teacher's
per-node logits (sub-words pooled onto nodes by character offsets) are the KD targets, masked where
no teacher sub-word covers the node (``t_mask``). BIO/BIOES tag sets are also scored at entity
level with seqeval (exact span match).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trainers.tasks.base import Task, text_problem
from trainers.tasks.scores import accuracy_f1, normalized_entropy
from trainers.teacher.alignment import align_nodes, pool_nodes
from trainers.teacher.inference import pad_batch

ENTITY_PREFIXES = ("B-", "I-", "E-", "S-", "L-", "U-")

IGNORE = -100  # the HF token head's label of sub-words that carry no target (its loss skips them)


def token_spans(tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Character spans of given tokens in ``" ".join(tokens)`` (how ingest stores token-task text)."""
    lens = np.array([len(t) for t in tokens], dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(lens + 1)[:-1]]) if len(lens) else lens
    return start, start + lens


def is_entity_scheme(labels: list[str]) -> bool:
    """BIO / BIOES tags: every tag is ``O`` or a prefix + type, with at least one ``B-``."""
    return any(l.startswith("B-") for l in labels) and all(l == "O" or l.startswith(ENTITY_PREFIXES) for l in labels)


def entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Entity-level precision / recall / F1 (exact span and type match; seqeval's default CoNLL rules)."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    return {"entity_precision": float(precision_score(gold, pred)), "entity_recall": float(recall_score(gold, pred)),
            "entity_f1": float(f1_score(gold, pred))}


class Token(Task):
    name, head, teacher_head = "token", "node", "token"
    cascade_unit = "sentence"  # a deferred sentence takes the teacher's tag for every token

    # ------------------------------------------------------------------ teacher
    teacher_gold = "tags"
    teacher_selection_metric = "accuracy"  # the macro-F1 over dozens of tags is ruled by the rarest ones

    def validation_nodes(self, tokens):
        """The given tokens: validation aligns to them, as the graph nodes do."""
        start, end = token_spans(tokens)
        return start.tolist(), end.tolist()

    def finetune_target(self, docs, d, enc, a, b, windower, label_index):
        """Each node's tag on its first sub-word, IGNORE on the other sub-words and the special tokens."""
        s, t = token_spans(list(docs["tokens"][d]))
        sub = np.full(len(enc.ids), IGNORE, dtype=np.int64)
        for g, tag in zip(align_nodes(s, t, enc.start, enc.end), docs["tags"][d]):
            if len(g) and sub[g[0]] == IGNORE:
                sub[g[0]] = label_index[tag]
        return [IGNORE] * len(windower.prefix) + sub[a:b].tolist() + [IGNORE] * len(windower.suffix)

    def finetune_batch_targets(self, targets):
        return pad_batch(targets, IGNORE)[0]

    def add_teacher_window(self, acc, out, r, pos, a, b, subwords):
        """Per-sub-word logits, summed where windows overlap (a teacher without a token head: the logits)."""
        if not ("logits" in out and out["logits"].ndim == 3):
            return super().add_teacher_window(acc, out, r, pos, a, b, subwords)
        tl = acc.setdefault("tok_logits", np.zeros((subwords, out["logits"].shape[-1]), np.float32))
        tl[a:b] += out["logits"][r, pos]

    def finish_teacher_row(self, row, accs, groups, denom, tcfg):
        """Sub-word logits averaged over windows, pooled onto the nodes (``node_aligned``: some sub-word covers it)."""
        if "tok_logits" not in accs[0]:
            return super().finish_teacher_row(row, accs, groups, denom, tcfg)
        nl, aligned = pool_nodes(accs[0]["tok_logits"] / denom, groups, tcfg.alignment)
        row["node_logits"], row["node_aligned"] = nl.reshape(-1), aligned

    def teacher_predictions(self, row, gold, labels):
        """One pair per node; an unaligned node predicts None. A document whose tags do not map one to
        one onto nodes (merged nodes) has none."""
        tags = list(gold) if gold is not None else []
        nl = np.asarray(row["node_logits"]).reshape(len(row["node_aligned"]), -1)
        if len(tags) != len(nl):
            return [], []
        return tags, [labels[int(np.argmax(x))] if ok else None for x, ok in zip(nl, row["node_aligned"])]

    def set_targets(self, data, enc, label, tags, trow):
        n, C = data.num_nodes, len(enc.labels)
        node_y = [enc.label_index(t) for t in (tags or [])]
        data.node_y = torch.tensor(node_y if len(node_y) == n else [-1] * n, dtype=torch.long)
        data.y = torch.tensor([-1], dtype=torch.long)
        data.t_logits = torch.zeros(1, C)
        nl = trow.get("node_logits") if trow else None
        data.t_node_logits = (torch.tensor(nl, dtype=torch.float32).view(n, C) if nl is not None and len(nl) == n * C
                              else torch.zeros(n, C))

    def teacher_uncertainty(self, data):
        m = data.t_mask
        return float(normalized_entropy(data.t_node_logits[m].double()).mean()) if bool(m.any()) else 1.0

    def targets(self, logits, batch, stage):
        keep = batch.t_mask  # KD only on nodes some teacher sub-word covers
        return batch.node_y, logits[keep], batch.t_node_logits[keep]

    def gate_weight(self, batch, t_kd):
        y = batch.node_y[batch.t_mask]
        return ((t_kd.argmax(-1) == y) | (y < 0)).float()

    def hide_gold(self, data):
        super().hide_gold(data)
        data.node_y.fill_(-1)

    def gold_and_teacher(self, data):
        return data.node_y, data.t_node_logits.argmax(-1)

    def teacher_as_gold(self, data):
        """Nodes no teacher sub-word covers keep no target (their teacher logits are zeros)."""
        data.node_y.copy_(torch.where(data.t_mask, data.t_node_logits.argmax(-1), -1))

    def scores(self, pred, gold, teach, labels, lengths=None):
        m = gold >= 0
        s = accuracy_f1(gold[m], pred[m], list(range(len(labels))))
        out = {"accuracy": s["accuracy"], "token_accuracy": s["accuracy"], "macro_f1": s["macro_f1"]}
        if is_entity_scheme(labels):  # per document, so no span runs across a document boundary
            cuts = np.cumsum(lengths or [len(gold)])[:-1]
            docs = [(g[g >= 0], p[g >= 0]) for g, p in zip(np.split(gold, cuts), np.split(pred, cuts))]
            out.update(entity_scores([[labels[i] for i in g] for g, _ in docs],
                                     [[labels[i] for i in p] for _, p in docs]))
        if teach is not None:
            out["agreement"] = float((pred[m] == teach[m]).mean()) if m.any() else 0.0
        return out

    # ------------------------------------------------------------------ serving
    inputs = ("text", "tokens")  # ``tokens`` (a list, kept as given) or ``text`` (spaCy tokenises)

    def input_problem(self, row, max_chars):
        toks = row.get("tokens")
        if toks is None:
            if row.get("text") is None:
                return "row has neither a 'tokens' nor a 'text' field"
            return text_problem(row.get("text"), "text", max_chars)
        if not isinstance(toks, (list, tuple)):
            return f"tokens must be a list of strings, got {type(toks).__name__}"
        if not toks:
            return "empty tokens list"
        for k, t in enumerate(toks):
            if not isinstance(t, str):
                return f"tokens[{k}] must be a string, got {type(t).__name__}"
            if not t.strip():  # spaCy drops whitespace tokens from the graph: its tag would be lost
                return f"tokens[{k}] is empty or whitespace"
        chars = sum(len(t) + 1 for t in toks) - 1
        if max_chars is not None and chars > max_chars:
            return f"tokens too long: {chars:,} characters (limit {max_chars:,}, --max-chars)"
        return None

    def build_inputs(self, builder, rows):
        """Rows with ``tokens``: one node per given token (``build_pretokenized``, as the graph stage
        builds token graphs); rows with ``text`` only: spaCy's tokens. Input order is kept."""
        given = [i for i, r in enumerate(rows) if r.get("tokens") is not None]
        raw = [i for i, r in enumerate(rows) if r.get("tokens") is None]
        out: list[dict[str, Any] | None] = [None] * len(rows)
        for i, g in zip(given, builder.build_pretokenized([list(rows[i]["tokens"]) for i in given]) if given else []):
            out[i] = {"graph": g}
        for i, g in zip(raw, builder.build([rows[i]["text"] for i in raw]) if raw else []):
            out[i] = {"graph": g}
        return out  # type: ignore[return-value]

    def split_logits(self, logits, sizes):
        """Per-node logits of a batch -> one (nodes, labels) slice per graph, in node order."""
        return list(torch.split(logits, list(sizes)))

    def record(self, logits, labels, graph) -> dict[str, Any]:
        tokens, tags = list(graph["token"]), [labels[int(i)] for i in logits.argmax(-1)]
        if len(tags) != len(tokens):  # never a misaligned line: the row gets an error instead
            raise ValueError(f"{len(tags)} tags for {len(tokens)} tokens")
        return {"tokens": tokens, "tags": tags}
