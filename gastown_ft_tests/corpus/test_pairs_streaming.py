"""The streamed pairs build (documents read, examples written and the output sorted a batch at a time,
dedup over compact columns with spilled members) gives exactly what the plain in-memory builder
`build_instruction_pairs` gives: the same examples in the same order, the same dedup report."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gastown_ft.artifacts import ArtifactStore
from gastown_ft.config import CorpusConfig, TownConfig
from gastown_ft.corpus import pairs_reuse, reuse, stages
from gastown_ft.corpus.documents import SOURCES
from gastown_ft.corpus.pairs import build_instruction_pairs
from gastown_ft.corpus.pairs_beads import build_bead_examples
from gastown_ft.corpus.splits import example_from_record, example_to_record
from gastown_ft.demo.town import build_demo_town


@pytest.fixture(scope="module")
def scrubbed(tmp_path_factory):
    demo = build_demo_town(tmp_path_factory.mktemp("stream-town"), seed=3)
    town = TownConfig(root=demo.root, claude_projects_dir=demo.claude_projects_dir)
    store = ArtifactStore(tmp_path_factory.mktemp("stream-artifacts"))
    for source in SOURCES:
        stages.read_stage(town, store, source, reuse=False)
    # The scrubber is not under test here: the pairs build reads the raw rows as they are.
    raw = pa.concat_tables([store.read_table("raw", s) for s in SOURCES])
    store.write_table("corpus", "scrubbed_documents", raw)
    return store


def test_streamed_build_equals_the_in_memory_builder(scrubbed, monkeypatch):
    store = scrubbed
    path = store.path("corpus", "scrubbed_documents")
    docs = pq.read_table(path)
    cfg = CorpusConfig(reuse=False)
    rows = docs.to_pylist()
    expected, report = build_instruction_pairs(
        {s: [r for r in rows if r["source"] == s] for s in pairs_reuse.UNIT_SOURCES}, cfg
    )

    # Tiny batches and buckets: every boundary (documents, examples, output buckets) is crossed.
    monkeypatch.setattr(pairs_reuse, "BATCH_ROWS", 32)
    monkeypatch.setattr(pairs_reuse, "DOC_COLUMNS_READ", 16)
    monkeypatch.setattr(pairs_reuse, "OUT_BUCKET_ROWS", 100)
    build = pairs_reuse.build_pairs(path, reuse.row_keys(docs, "scrubbed"), cfg, store, reuse_cache=False)
    got = [example_from_record(r) for r in pq.read_table(build.path).to_pylist()]
    assert len(got) == build.num_rows > 100 * 3
    assert [e["example_id"] for e in got] == [e["example_id"] for e in expected]
    assert got == [example_from_record(example_to_record(e)) for e in expected]
    assert build.report.dedup == report.dedup and build.report.conflicts == report.conflicts
    assert build.report.by_task == report.by_task and build.report.by_role == report.by_role
    assert build.example_ids.to_pylist() == [e["example_id"] for e in expected]
    # No spill file is left behind under the artifacts.
    assert not [p for p in store.root.iterdir() if p.name.startswith(".pairs-")]


def test_bead_builder_reads_a_reiterable_twice_and_a_one_shot_iterator_once(scrubbed):
    docs = pq.read_table(scrubbed.path("corpus", "scrubbed_documents"))
    beads = [r for r in docs.to_pylist() if r["source"] == "beads"]
    reads = []

    class Twice:
        def __iter__(self):
            reads.append(1)
            return iter(beads)

    from_list = list(build_bead_examples(beads))
    assert list(build_bead_examples(Twice())) == from_list and len(reads) == 2
    assert list(build_bead_examples(iter(beads))) == from_list
