"""Incremental corpus builds: after edits of the town, reusing earlier results gives exactly the outputs of
a clean build in a fresh artifacts dir, while only the changed content is recomputed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gastown_ft.artifacts import ArtifactStore
from gastown_ft.config import CorpusConfig, TownConfig
from gastown_ft.corpus import stages
from gastown_ft.corpus.dedup import MINHASH_SCHEME, MINHASH_SEED, _band_buckets, lsh_params, sketch_texts
from gastown_ft.corpus.documents import SOURCES
from gastown_ft.corpus.reuse import output_differences
from gastown_ft.corpus.town_edits import (
    add_bead,
    edit_formula,
    formula_files,
    grow_transcript,
    remove_formula,
)
from gastown_ft.demo.town import build_demo_town


def build(town: TownConfig, artifacts: Path, *, reuse: bool = True) -> dict:
    """The corpus stages in asset order; their stats by stage."""
    store = ArtifactStore(artifacts)
    corpus = CorpusConfig(reuse=reuse)
    out = {f"read_{s}": stages.read_stage(town, store, s, reuse=reuse) for s in SOURCES}
    out["scrub"], _ = stages.scrub_stage(store, reuse=reuse)
    out["pairs"], outcomes, _ = stages.pairs_stage(store, corpus)
    assert all(o.passed for o in outcomes), outcomes
    out["splits"], outcomes = stages.splits_stage(store, corpus)
    assert all(o.passed for o in outcomes), outcomes
    out["quarantine"] = stages.quarantine_stage(town, store)
    return out


def _rows(artifacts: Path, stage: str, name: str) -> list[dict]:
    return pq.read_table(artifacts / stage / f"{name}.parquet").to_pylist()


@pytest.fixture(scope="module")
def town(tmp_path_factory):
    demo = build_demo_town(tmp_path_factory.mktemp("inc-town"), seed=5)
    return demo, TownConfig(root=demo.root, claude_projects_dir=demo.claude_projects_dir)


def test_edits_rebuild_equals_clean_build(town, tmp_path):
    demo, cfg = town
    first = build(cfg, tmp_path / "inc")
    assert first["splits"]["corpus_change_fraction"] == 1.0 and first["splits"]["first_build"]
    assert first["scrub"]["reused_documents"] == 0
    again = build(cfg, tmp_path / "inc")  # nothing changed: nothing recomputed, no change reported
    assert all(again[f"read_{s}"]["reused"] for s in SOURCES)
    assert again["scrub"]["recomputed_documents"] == 0 and again["pairs"]["reuse"]["units_built"] == 0
    assert again["pairs"]["validated_examples"] == 0 and again["splits"]["corpus_change_fraction"] == 0.0

    formulas = formula_files(demo.root)
    edited = edit_formula(formulas[0], "Edited: check the convoy before you start.")
    issues = sorted(demo.root.rglob("issues.jsonl"))[0]
    add_bead(issues, "hq-inc01", "Rotate the webhook signing secret")
    second = build(cfg, tmp_path / "inc")
    clean = build(cfg, tmp_path / "clean1", reuse=False)
    assert output_differences(tmp_path / "inc", tmp_path / "clean1") == []
    assert clean["scrub"]["reused_documents"] == 0 and clean["pairs"]["reuse"]["units_reused"] == 0
    assert [p.name for p in (tmp_path / "clean1" / "cache").iterdir()] == ["splits_example_ids.parquet"]
    # The cache holds the current rows only: the formula's entry from before its edit is gone.
    cached = pq.read_table(tmp_path / "inc" / "cache" / "scrub_formulas.parquet")
    assert cached.num_rows == len(_rows(tmp_path / "inc", "raw", "formulas"))

    # Only the sources with edited files were read again; only the changed rows were scrubbed.
    assert not second["read_formulas"]["reused"] and not second["read_beads"]["reused"]
    assert second["read_conventions"]["reused"] and second["read_transcripts"]["reused"]
    # The edited formula, and the beads of the appended file (their provenance holds the file's mtime).
    scrub = second["scrub"]
    same_file = [d for d in _rows(tmp_path / "inc", "raw", "beads") if d["path"].endswith(issues.name)]
    same_file = [d for d in same_file if Path(demo.root / d["path"]) == issues]
    assert scrub["recomputed_documents"] == 1 + len(same_file)
    assert scrub["reused_documents"] + scrub["recomputed_documents"] == scrub["rows"] + scrub["quarantined"]
    reuse = second["pairs"]["reuse"]
    assert reuse["units_built"] == 2  # the edited formula, and the beads (one unit: they cross-reference)
    assert reuse["units_reused"] > 10 and reuse["components_reused"] >= 0
    # The change is in the outputs, and reported on the splits.
    docs = _rows(tmp_path / "inc", "corpus", "scrubbed_documents")
    assert any("Edited: check the convoy" in d["text"] for d in docs if d["path"].endswith(edited.name))
    assert any("Rotate the webhook signing secret" in d["text"] for d in docs)
    change = second["splits"]
    assert change["examples_added"] > 0 and change["examples_removed"] > 0
    expected = (change["examples_added"] + change["examples_removed"]) / first["splits"]["rows"]
    assert change["corpus_change_fraction"] == pytest.approx(expected) and 0 < expected < 0.5

    # A formula removed and a transcript grown: again the same as a clean build.
    remove_formula(formulas[1])
    transcript = sorted(demo.claude_projects_dir.rglob("*.jsonl"))[0]
    grow_transcript(transcript, "Merged; the convoy is closed.")
    third = build(cfg, tmp_path / "inc")
    build(cfg, tmp_path / "clean2", reuse=False)
    assert output_differences(tmp_path / "inc", tmp_path / "clean2") == []
    assert third["read_conventions"]["reused"] and not third["read_transcripts"]["reused"]
    assert third["pairs"]["reuse"]["units_built"] >= 1
    assert third["splits"]["examples_removed"] > 0


def test_lsh_bands_find_what_datasketch_finds():
    """The band buckets of dedup give each example exactly the candidates datasketch's MinHashLSH gives."""
    from datasketch import MinHashLSH
    from datasketch.lean_minhash import LeanMinHash

    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(400)]
    base = [" ".join(rng.choice(words, 60)) for _ in range(30)]
    texts = []
    for t in base:  # each base text with near copies (a few words changed) and far ones
        for k in (0, 1, 2, 8, 30):
            ws = t.split()
            for j in rng.choice(len(ws), k, replace=False):
                ws[j] = "x" + str(rng.integers(1_000_000))
            texts.append(" ".join(ws))
    num_perm, threshold = 128, 0.9
    sigs = sketch_texts(texts, num_perm)
    bands, rows = lsh_params(threshold, num_perm)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=(bands, rows))
    for i, s in enumerate(sigs):
        lsh.insert(i, LeanMinHash(seed=MINHASH_SEED, hashvalues=s, scheme=MINHASH_SCHEME))
    buckets = _band_buckets(sigs, np.arange(len(sigs)), bands, rows)
    pairs_found = 0
    for i, s in enumerate(sigs):
        theirs = set(lsh.query(LeanMinHash(seed=MINHASH_SEED, hashvalues=s, scheme=MINHASH_SCHEME))) - {i}
        ours = {j for j in range(len(sigs)) if j != i and (buckets[:, j] == buckets[:, i]).any()}
        assert ours == theirs
        pairs_found += len(ours)
    assert pairs_found > 0
