"""``brown-pairs``: a sentence-pair DEVELOPMENT set derived from the Brown corpus (not a benchmark).

Nobody judged these pairs. The score only says where the two sentences come from, a proxy for
topical relatedness that needs no annotation, so the pair task can be run end to end on a built-in
corpus; it is never a measure of semantic similarity and must not be reported as one.

For every anchor sentence (8-40 tokens) of a document, four pairs, one per provenance level:

- 1.0   the next sentence of the same document (adjacent);
- 0.667 a sentence of the same document at least ``FAR`` sentences away;
- 0.333 a sentence of another document of the same genre;
- 0.0   a sentence of a document of another genre.

Splits are by document (hash of the anchor's file name) and partners are drawn from documents of
the same split only, so no test sentence appears in a training pair. Rows are shuffled (seeded),
so ``data.limit`` takes a balanced sample; the sides are swapped at random.
"""
from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa

MIN_TOKENS, MAX_TOKENS = 8, 40
ANCHORS_PER_DOC = 10
FAR = 5
LEVELS = (1.0, 2 / 3, 1 / 3, 0.0)
SEED = 13


def build(root: Path) -> pa.Table:
    from pipeline.corpora import _brown_files, _brown_sentences, hash_split

    files, cats = _brown_files(root)
    rng = random.Random(SEED)
    docs: dict[str, list[str]] = {}
    for f in files:
        sents = [[w for w, _ in s] for s in _brown_sentences(f)]
        docs[f.name] = [" ".join(s) if MIN_TOKENS <= len(s) <= MAX_TOKENS else "" for s in sents]
    split_of = {name: hash_split(name) for name in docs}
    by_split_genre: dict[tuple[str, str], list[str]] = {}
    for name in docs:
        by_split_genre.setdefault((split_of[name], cats[name]), []).append(name)

    def random_sentence(doc: str) -> str:
        return rng.choice([s for s in docs[doc] if s])

    rows: dict[str, list] = {"id": [], "text_a": [], "text_b": [], "score": [], "split": []}
    for name, sents in docs.items():
        split, genre = split_of[name], cats[name]
        same = [d for d in by_split_genre[(split, genre)] if d != name]
        other = [d for (s, g), ds in by_split_genre.items() if s == split and g != genre for d in ds]
        anchors = [i for i in range(len(sents) - 1) if sents[i] and sents[i + 1]]
        rng.shuffle(anchors)
        for i in sorted(anchors[:ANCHORS_PER_DOC]):
            far = [j for j, s in enumerate(sents) if s and abs(i - j) >= FAR]
            partners = [sents[i + 1], sents[rng.choice(far)] if far else None,
                        random_sentence(rng.choice(same)) if same else None,
                        random_sentence(rng.choice(other)) if other else None]
            for level, (score, b) in enumerate(zip(LEVELS, partners)):
                if b is None:
                    continue
                a = sents[i]
                if rng.random() < 0.5:
                    a, b = b, a
                rows["id"].append(f"{name}.{i:04d}.{level}")
                rows["text_a"].append(a)
                rows["text_b"].append(b)
                rows["score"].append(round(score, 4))
                rows["split"].append(split)
    order = list(range(len(rows["id"])))
    rng.shuffle(order)
    return pa.table({k: [v[i] for i in order] for k, v in rows.items()})
