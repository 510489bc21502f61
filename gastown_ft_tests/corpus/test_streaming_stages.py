"""The scrub and splits stages stream (a batch, a bucket at a time): their outputs are those of the
whole-table computation, whatever the batch and bucket sizes, with and without the scrub cache."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gastown_ft.artifacts import ArtifactStore
from gastown_ft.config import CorpusConfig, ScrubConfig
from gastown_ft.corpus import stages
from gastown_ft.corpus.documents import DOCUMENT_SCHEMA, Document, documents_to_table
from gastown_ft.corpus.scrub import Scrubber
from gastown_ft.corpus.splits import ROW_SCHEMA, SPLITS, example_to_record, split_examples, write_splits
from gastown_ft_tests.corpus.test_splits import corpus

NO_LEARNING = ScrubConfig(learn_names=False)


def _bead(i: int, text: str | None = None) -> Document:
    return Document(
        source="beads",
        kind="bead",
        path=".beads/issues.jsonl",
        key=f"gt-{i}",
        title=f"bead gt-{i}",
        text=text or f"Fix the importer retry {i}; ask ops at +1 415 555 01{i % 100:02d} or 10.0.{i % 250}.7",
        meta={"id": f"gt-{i}", "status": "open"},
    )


def _raw(store: ArtifactStore, docs: list[Document]) -> None:
    store.write_table("raw", "beads", documents_to_table(docs))


def _scrubbed(store: ArtifactStore) -> pa.Table:
    return store.read_table("corpus", "scrubbed_documents")


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(stages, "BATCH_ROWS", 7)


def test_scrub_with_the_cache_equals_a_clean_scrub(tmp_path, small_batches):
    docs = [_bead(i) for i in range(40)]
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7abcdefghijklmnopqrstuvwxyz0123456789abcdefghij\n"
    docs[3] = _bead(3, key)  # no END line: cannot be scrubbed safely, quarantined
    cached = ArtifactStore(tmp_path / "cached")
    _raw(cached, docs)
    first, _ = stages.scrub_stage(cached, identities=NO_LEARNING)
    assert first["rows"] == 39 and first["quarantined"] == 1 and first["reused_documents"] == 0

    # One row edited, one dropped, two added, the order changed: only the three new rows are scrubbed.
    docs[10] = _bead(10, "Edited: page ops at 10.9.9.9")
    del docs[20]
    docs += [_bead(100), _bead(101)]
    random.Random(0).shuffle(docs)
    _raw(cached, docs)
    again, outcomes = stages.scrub_stage(cached, identities=NO_LEARNING)
    clean = ArtifactStore(tmp_path / "clean")
    _raw(clean, docs)
    expected, _ = stages.scrub_stage(clean, reuse=False, identities=NO_LEARNING)

    assert _scrubbed(cached).equals(_scrubbed(clean))
    assert _scrubbed(cached).schema.remove_metadata() == DOCUMENT_SCHEMA
    assert cached.read_table("quarantine", "scrub").equals(clean.read_table("quarantine", "scrub"))
    assert again["recomputed_documents"] == 3 and again["reused_documents"] == len(docs) - 3
    for key in ("rows", "bytes", "bytes_in", "bytes_scanned", "by_kind", "quarantined"):
        assert again[key] == expected[key], key
    assert all(o.passed for o in outcomes)
    # The scrub cache is written in small row groups, so a batch reads only the groups it needs.
    assert pq.ParquetFile(cached.path("cache", "scrub_beads")).metadata.num_row_groups > 1


def test_a_batch_that_fails_the_residue_check_is_checked_again(tmp_path, small_batches):
    store = ArtifactStore(tmp_path / "a")
    docs = [_bead(i) for i in range(20)]
    _raw(store, docs)
    no_emails = Scrubber(emails=False)  # so that an address is left for the residue check to find
    stages.scrub_stage(store, no_emails, identities=NO_LEARNING)
    _raw(store, [*docs, _bead(20, "Mail jane.roe@example.org about the importer")])
    stats, outcomes = stages.scrub_stage(store, no_emails, identities=NO_LEARNING)
    assert stats["reused_documents"] == 20
    assert not {o.name: o for o in outcomes}["no_secret_residue"].passed
    # The cache kept the rows that passed before, not the new one: it is scrubbed and checked again.
    assert pq.read_table(store.path("cache", "scrub_beads")).num_rows == 20
    stats, outcomes = stages.scrub_stage(store, no_emails, identities=NO_LEARNING)
    assert stats["reused_documents"] == 20 and stats["recomputed_documents"] == 1
    assert not {o.name: o for o in outcomes}["no_secret_residue"].passed


def test_splits_stage_sorts_in_buckets_to_the_files_write_splits_gives(tmp_path, monkeypatch):
    import gastown_ft.corpus.splits as splits_module

    monkeypatch.setattr(splits_module, "ROW_GROUP_SIZE", 4)
    monkeypatch.setattr(stages, "BATCH_ROWS", 9)
    monkeypatch.setattr(stages, "SORT_BUCKET_ROWS", 7)
    examples = corpus(30)
    twin = dict(examples[5], group_id=examples[5]["group_id"] + "-twin")  # same id, another group
    examples += [twin, dict(examples[7])]  # and an exact repeat: the sort keeps file order
    random.Random(2).shuffle(examples)
    store = ArtifactStore(tmp_path / "artifacts")
    table = pa.Table.from_pylist([example_to_record(e) for e in examples], ROW_SCHEMA)
    store.write_batches(
        "corpus", "instruction_pairs", ROW_SCHEMA, [table.slice(i, 11) for i in range(0, 95, 11)]
    )
    cfg = CorpusConfig()
    stats, outcomes = stages.splits_stage(store, cfg)

    by_split = split_examples(examples, min_groups=cfg.split_min_groups)
    expected = write_splits(by_split, tmp_path / "expected", dataset_name="d", description="x")
    got = tmp_path / "artifacts" / "corpus" / "splits" / "data"
    for name in SPLITS:
        assert (got / f"{name}.parquet").read_bytes() == (
            tmp_path / "expected/data" / f"{name}.parquet"
        ).read_bytes()
    assert pq.ParquetFile(got / "train.parquet").metadata.num_row_groups > 3
    assert stats["corpus_version"] == expected["version"]
    assert stats["counts"] == {name: len(by_split[name]) for name in SPLITS}
    assert all(o.passed for o in outcomes)
    assert not list((tmp_path / "artifacts" / "corpus").glob(".splits-sort-*"))  # the buckets are gone
