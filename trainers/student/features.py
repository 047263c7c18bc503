"""Graph dict (GRAPHS row or GraphBuilder output) -> PyG ``Data`` with integer node/edge features.

The same ``GraphEncoding`` (vocabulary, POS and relation lists, edge-kind switch) is used to build
training tensors and at prediction time, and is saved inside the student checkpoint, so a deployed
student needs nothing but the checkpoint and the graph builder.

Edge types: 0 = co-occurrence (both directions, weight = normalised pair count); 1..R = dependency
relation r head -> child; R+1..2R = the same relation child -> head (reverse edges, so information
flows both ways along the parse). Unknown relations map to the last relation slot ("<other>").
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch_geometric.data import Data

PAD, UNK = 0, 1
UNIVERSAL_POS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
                 "PUNCT", "SCONJ", "SYM", "VERB", "X", "SPACE")


@dataclass
class GraphEncoding:
    vocab: list[str]  # index 0 = <pad>, 1 = <unk>
    relations: list[str]  # last entry is "<other>"
    labels: list[str]
    edges: str = "hybrid"  # hybrid | dependency | cooccurrence
    pos: list[str] = field(default_factory=lambda: list(UNIVERSAL_POS))

    def __post_init__(self):
        self._w = {w: i for i, w in enumerate(self.vocab)}
        self._p = {p: i for i, p in enumerate(self.pos)}
        self._r = {r: i for i, r in enumerate(self.relations)}
        self._l = {l: i for i, l in enumerate(self.labels)}

    @classmethod
    def build(cls, vocab_table, relations: Sequence[str], labels: Sequence[str], min_count: int, max_size: int,
              edges: str = "hybrid", pos_features: bool = True) -> "GraphEncoding":
        """Vocabulary from the graph stage's VOCAB table (training split counts). Without
        ``pos_features`` the POS list is the single tag ``X``: every node gets the same POS input,
        in training and (the encoding is saved with the student) at prediction time."""
        tok = vocab_table.column("token").to_pylist()
        cnt = vocab_table.column("count").to_pylist()
        kept = sorted((c, t) for t, c in zip(tok, cnt) if c >= min_count)
        kept = [t for c, t in sorted(kept, key=lambda x: (-x[0], x[1]))][: max_size - 2]
        return cls(["<pad>", "<unk>", *kept], sorted(set(relations)) + ["<other>"], list(labels), edges,
                   list(UNIVERSAL_POS) if pos_features else ["X"])

    @property
    def num_edge_types(self) -> int:
        return 1 + 2 * len(self.relations)

    def state(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "relations": self.relations, "labels": self.labels, "edges": self.edges,
                "pos": self.pos}

    def encode(self, g: dict[str, Any]) -> Data:
        """One graph dict -> Data(x_tok, x_pos, sent, edge_index, edge_type, edge_weight)."""
        n = int(g["num_nodes"])
        x_tok = torch.tensor([self._w.get(w, UNK) for w in g["lower"]], dtype=torch.long)
        x_pos = torch.tensor([self._p.get(p, self._p["X"]) for p in g["pos"]], dtype=torch.long)
        src, dst, typ, wt = [], [], [], []
        if self.edges in ("hybrid", "dependency") and len(g["dep_src"]):
            other = len(self.relations) - 1
            r = np.array([self._r.get(x, other) for x in g["dep_rel"]], dtype=np.int64)
            s, d = np.asarray(g["dep_src"], np.int64), np.asarray(g["dep_dst"], np.int64)
            R = len(self.relations)
            src += [s, d]; dst += [d, s]; typ += [1 + r, 1 + R + r]; wt += [np.ones(len(s) * 2, np.float32)]
        if self.edges in ("hybrid", "cooccurrence") and len(g["co_src"]):
            s, d = np.asarray(g["co_src"], np.int64), np.asarray(g["co_dst"], np.int64)
            w = np.asarray(g["co_weight"], np.float32)
            src += [s, d]; dst += [d, s]; typ += [np.zeros(len(s) * 2, np.int64)]; wt += [np.concatenate([w, w])]
        if src:
            edge_index = torch.from_numpy(np.stack([np.concatenate(src), np.concatenate(dst)]))
            edge_type = torch.from_numpy(np.concatenate(typ))
            edge_weight = torch.from_numpy(np.concatenate(wt))
        else:
            edge_index, edge_type, edge_weight = (torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                                                  torch.zeros(0))
        return Data(x_tok=x_tok, x_pos=x_pos, sent=torch.tensor(g["sent"], dtype=torch.long), edge_index=edge_index,
                    edge_type=edge_type, edge_weight=edge_weight, num_nodes=n)

    def restrict(self, data: Data) -> Data:
        """A graph encoded with every edge kind, cut to this encoding's ``edges`` (a copy; no-op for
        hybrid). Equal to encoding the graph with these edges, so rows that differ only in the edge
        kinds share one prepared set of graphs."""
        if self.edges == "hybrid":
            return data
        keep = data.edge_type > 0 if self.edges == "dependency" else data.edge_type == 0
        out = copy.copy(data)
        out.edge_index, out.edge_type, out.edge_weight = (data.edge_index[:, keep], data.edge_type[keep],
                                                          data.edge_weight[keep])
        return out

    def label_index(self, label) -> int:
        return self._l.get(label, -1) if label is not None else -1
