from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import pytest

from gastown_ft.corpus.splits import (
    ROW_SCHEMA,
    SPLITS,
    assign_split,
    corpus_version,
    example_from_record,
    split_examples,
    split_point,
    write_splits,
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "bash",
            "description": "Run a shell command in the polecat's worktree.",
            "parameters": {
                "type": "object",
                "properties": {"command": {"type": "string"}, "timeout": {"type": "integer"}},
                "required": ["command"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "gt_mail_send",
            "parameters": {"type": "object", "properties": {"to": {"type": "string", "enum": ["mayor"]}}},
        },
    },
]


def make_example(i: int, group: str, *, task: str = "tool_use", tools: list | None = None) -> dict:
    call_id = f"toolu_{i:04d}"
    messages = [
        {"role": "system", "content": "You are a polecat in the gastown rig."},
        {"role": "user", "content": f"Work bead gt-{i}: run the tests.\n\nThen report."},
        {
            "role": "assistant",
            "content": "Running the tests.",
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "bash", "arguments": json.dumps({"command": f"make test-{i}"})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "name": "bash", "content": f"ok {i} passed ✓"},
        {"role": "assistant", "content": "", "tool_calls": []},
        {"role": "assistant", "content": f"All tests pass for gt-{i}. `gt done`."},
    ]
    return {
        "example_id": hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest(),
        "messages": messages,
        "tools": TOOLS if tools is None else tools,
        "task": task,
        "rig": "gastown" if i % 3 else None,
        "role": "polecat",
        "source_ids": [f"transcripts:{group}", f"beads:gt-{i}"],
        "quality": 0.5 + (i % 5) / 10,
        "weight": 1.0,
        "group_id": group,
        "source_time": 1_700_000_000.0 + i,
    }


def corpus(n_groups: int, per_group: int = 3, *, prefix: str = "session") -> list[dict]:
    out = []
    for g in range(n_groups):
        for k in range(per_group):
            i = g * per_group + k
            out.append(make_example(i, f"{prefix}-{g}", task=("tool_use", "mail", "formula")[i % 3]))
    return out


# --- assignment ------------------------------------------------------------------------------------


def test_assignment_is_pinned():
    # These values follow from the documented rule; if they change, every published example moves.
    assert assign_split("bead-0") == "train" and split_point("bead-0") == pytest.approx(0.176334, abs=1e-6)
    assert assign_split("bead-14") == "validation" and split_point("bead-14") == pytest.approx(
        0.82699, abs=1e-6
    )
    assert assign_split("bead-4") == "test" and split_point("bead-4") == pytest.approx(0.928863, abs=1e-6)
    assert assign_split("formula:mol-polecat-work") == "test"
    digest = hashlib.sha256(b"gastown-ft-v1\0bead-0").digest()
    assert split_point("bead-0") == int.from_bytes(digest[:8], "big") / 2**64


def test_seed_and_ratios_change_the_assignment():
    groups = [f"g-{i}" for i in range(400)]
    a = [assign_split(g) for g in groups]
    b = [assign_split(g, seed="another-seed") for g in groups]
    assert a != b
    assert all(assign_split(g, ratios=(1.0, 0.0, 0.0)) == "train" for g in groups)
    assert all(assign_split(g, ratios=(0.0, 0.0, 1.0)) == "test" for g in groups)


@pytest.mark.parametrize(
    "ratios", [(0.8, 0.1), (0.8, 0.2, 0.1), (1.1, -0.05, -0.05), (0.5, float("nan"), 0.5)]
)
def test_bad_ratios(ratios):
    with pytest.raises(ValueError):
        assign_split("g", ratios=ratios)


@pytest.mark.parametrize("group_id", ["", None, 7])
def test_bad_group_id(group_id):
    with pytest.raises(ValueError):
        assign_split(group_id)
    with pytest.raises(ValueError):
        split_examples([{"example_id": "x", "group_id": group_id}])


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (0.9, 0.05, 0.05)])
def test_ratios_are_respected_over_10k_groups(ratios):
    rng = random.Random(1234)
    groups = [f"{rng.getrandbits(64):016x}-{i}" for i in range(10_000)]
    counts = Counter(assign_split(g, ratios=ratios) for g in groups)
    for name, ratio in zip(SPLITS, ratios, strict=True):
        assert abs(counts[name] / len(groups) - ratio) < 0.02, (name, counts)


def test_no_group_spans_two_splits():
    examples = corpus(200, per_group=4)
    splits = split_examples(examples)
    assert set(splits) == set(SPLITS)
    seen: dict[str, str] = {}
    for name, rows in splits.items():
        for row in rows:
            assert seen.setdefault(row["group_id"], name) == name
    assert sum(len(rows) for rows in splits.values()) == len(examples)
    assert all(rows == sorted(rows, key=lambda r: r["example_id"]) for rows in splits.values())


def test_split_is_stable_when_data_is_added_and_independent_of_order():
    examples = corpus(150)
    before = {row["example_id"]: name for name, rows in split_examples(examples).items() for row in rows}

    # one more document in an existing group, and a whole new group
    grown = [*examples, make_example(9001, "session-7"), make_example(9002, "session-new")]
    random.Random(5).shuffle(grown)
    after = {row["example_id"]: name for name, rows in split_examples(grown).items() for row in rows}
    assert all(after[eid] == name for eid, name in before.items())
    assert after[make_example(9001, "session-7")["example_id"]] == assign_split("session-7")
    assert len(after) == len(before) + 2

    # the assignment of an example does not depend on the other examples
    for row in examples[:30]:
        alone = split_examples([row])
        assert [name for name, rows in alone.items() if rows] == [before[row["example_id"]]]


def test_corpus_version():
    splits = split_examples(corpus(40))
    version = corpus_version(splits)
    shuffled = {name: list(reversed(rows)) for name, rows in splits.items()}
    assert corpus_version(shuffled) == version
    moved = {name: list(rows) for name, rows in splits.items()}
    moved["test"].append(moved["train"].pop())
    assert corpus_version(moved) != version
    grown = split_examples([*corpus(40), make_example(5000, "session-x")])
    assert corpus_version(grown) != version


# --- writing and loading ---------------------------------------------------------------------------


@pytest.fixture()
def written(tmp_path):
    examples = corpus(60)
    examples[0] = {**examples[0], "tools": [], "scratch": "not in the schema"}
    splits = split_examples(examples)
    out = tmp_path / "dataset"
    summary = write_splits(splits, out, dataset_name="gastown-ft-test", description="A test corpus.")
    return examples, splits, out, summary


def _load(path_or_builder: str, tmp_path: Path, **kwargs):
    import datasets

    return datasets.load_dataset(path_or_builder, cache_dir=str(tmp_path / "hf-cache"), **kwargs)


def test_summary(written):
    examples, splits, out, summary = written
    assert summary["num_examples"] == {name: len(splits[name]) for name in SPLITS}
    assert summary["total"] == len(examples)
    assert summary["tasks"] == dict(sorted(Counter(e["task"] for e in examples).items()))
    for name in SPLITS:
        assert summary["tasks_per_split"][name] == dict(Counter(e["task"] for e in splits[name]))
    assert summary["version"] == corpus_version(splits)
    assert summary["dropped_fields"] == ["scratch"]
    assert summary["download_size"] == sum((out / f).stat().st_size for f in summary["files"].values())
    assert summary["dataset_size"] == sum(summary["num_bytes"].values())
    assert sorted(p.name for p in (out / "data").iterdir()) == sorted(f"{n}.parquet" for n in SPLITS)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def _by_id(rows) -> dict[str, dict]:
    return {row["example_id"]: example_from_record(row) for row in rows}


def _expected(example: dict) -> dict:
    return {k: v for k, v in example.items() if k in ROW_SCHEMA.names}


def test_load_dataset_from_the_card_and_round_trip(written, tmp_path):
    import datasets

    examples, splits, out, summary = written
    ds = _load(str(out), tmp_path)
    assert set(ds) == set(SPLITS)
    expected_features = datasets.Features.from_arrow_schema(ROW_SCHEMA)
    for name in SPLITS:
        assert ds[name].features == expected_features
        assert ds[name].num_rows == summary["num_examples"][name]
        got = _by_id(ds[name])
        assert got == {e["example_id"]: _expected(e) for e in splits[name]}
    # a row with tool calls, a tool result, unicode and an empty tool_calls list, exactly
    first = ds["train"][0]
    original = next(e for e in splits["train"] if e["example_id"] == first["example_id"])
    assert example_from_record(first)["messages"] == original["messages"]
    assert first["messages"][2]["tool_calls"][0]["function"]["name"] == "bash"
    assert first["messages"][4]["tool_calls"] == [] and first["messages"][4]["content"] == ""
    assert first["messages"][0]["tool_calls"] is None
    assert json.loads(first["tools"]) == original["tools"]


@pytest.mark.parametrize("how", ["data_dir", "data_files"])
def test_load_dataset_parquet(written, tmp_path, how):
    examples, splits, out, summary = written
    if how == "data_dir":
        ds = _load("parquet", tmp_path, data_dir=str(out / "data"))
    else:
        files = {name: str(out / "data" / f"{name}.parquet") for name in SPLITS}
        ds = _load("parquet", tmp_path, data_files=files)
    assert {name: ds[name].num_rows for name in ds} == summary["num_examples"]
    all_rows = {}
    for name in ds:
        all_rows.update(_by_id(ds[name]))
    assert all_rows == {e["example_id"]: _expected(e) for e in examples}


def test_dataset_card(written):
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    examples, splits, out, summary = written
    card = DatasetCard.load(out / "README.md")
    info = card.data.dataset_info
    assert {s["name"]: s["num_examples"] for s in info["splits"]} == summary["num_examples"]
    assert {s["name"]: s["num_bytes"] for s in info["splits"]} == summary["num_bytes"]
    assert info["download_size"] == summary["download_size"]
    assert info["dataset_size"] == summary["dataset_size"]
    assert card.data.configs == [
        {
            "config_name": "default",
            "data_files": [{"split": name, "path": f"data/{name}.parquet"} for name in SPLITS],
        }
    ]
    # datasets reads the same header back
    import datasets

    infos = DatasetInfosDict.from_dataset_card_data(card.data)
    assert infos["default"].features == datasets.Features.from_arrow_schema(ROW_SCHEMA)
    assert list(MetadataConfigs.from_dataset_card_data(card.data)) == ["default"]
    # the body
    assert "# gastown-ft-test" in card.text and "A test corpus." in card.text
    assert summary["version"] in card.text
    for task, n in summary["tasks"].items():
        assert f"| {task} |" in card.text and f"| {n} |" in card.text
    assert "group_id" in card.text and "Intended for" in card.text


def test_rewrite_is_deterministic_and_replaces_in_place(tmp_path):
    examples = corpus(40)
    a, b = tmp_path / "a", tmp_path / "b"
    sa = write_splits(split_examples(examples), a, dataset_name="d", description="x")
    sb = write_splits(split_examples(list(reversed(examples))), b, dataset_name="d", description="x")
    assert sa["version"] == sb["version"]
    for rel in ["README.md", *sa["files"].values()]:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel

    # rewrite with different data: foreign files survive, stale split files go, nothing left behind
    (a / "NOTES.md").write_text("kept")
    (a / "data" / "old-shard.parquet").write_text("stale")
    only_train = {"train": split_examples(examples)["train"][:5], "validation": [], "test": []}
    s2 = write_splits(only_train, a, dataset_name="d", description="x")
    assert (a / "NOTES.md").read_text() == "kept"
    assert sorted(p.name for p in (a / "data").iterdir()) == ["train.parquet"]
    assert s2["num_examples"] == {"train": 5, "validation": 0, "test": 0}
    assert s2["files"] == {"train": "data/train.parquet"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_empty_splits_are_left_out_and_load(tmp_path):
    from huggingface_hub import DatasetCard

    examples = corpus(10)
    out = tmp_path / "d"
    summary = write_splits({"train": examples}, out, dataset_name="d", description="x")
    assert summary["num_examples"] == {"train": len(examples), "validation": 0, "test": 0}
    card = DatasetCard.load(out / "README.md")
    assert [s["name"] for s in card.data.dataset_info["splits"]] == ["train"]
    assert card.data.configs[0]["data_files"] == [{"split": "train", "path": "data/train.parquet"}]
    ds = _load(str(out), tmp_path)
    assert list(ds) == ["train"] and ds["train"].num_rows == len(examples)


def test_schema_is_enforced(tmp_path):
    bad = make_example(1, "g")
    bad["messages"] = [*bad["messages"], {"role": "assistant", "content": "x", "reasoning": "hidden"}]
    with pytest.raises(ValueError, match="unknown message keys"):
        write_splits({"train": [bad]}, tmp_path / "x", dataset_name="d", description="x")
    bad = make_example(1, "g")
    bad["messages"][2]["tool_calls"][0]["function"]["arguments"] = {"command": "ls"}
    with pytest.raises(ValueError, match="JSON string"):
        write_splits({"train": [bad]}, tmp_path / "x", dataset_name="d", description="x")
    with pytest.raises(ValueError, match="unknown split"):
        write_splits({"dev": []}, tmp_path / "x", dataset_name="d", description="x")
    assert not (tmp_path / "x").exists()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_the_old_dataset(tmp_path, monkeypatch):
    import gastown_ft.corpus.splits as splits_module

    out = tmp_path / "d"
    write_splits(split_examples(corpus(20)), out, dataset_name="d", description="first")
    (out / "NOTES.md").write_text("kept")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real = splits_module._write_parquet
    calls = []

    def failing(table, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real(table, path)

    monkeypatch.setattr(splits_module, "_write_parquet", failing)
    with pytest.raises(OSError, match="disk full"):
        write_splits(split_examples(corpus(30)), out, dataset_name="d", description="second")
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_a_symlinked_out_dir_is_written_through(tmp_path):
    target = tmp_path / "v1"
    link = tmp_path / "current"
    write_splits(split_examples(corpus(5)), target, dataset_name="d", description="x")
    link.symlink_to(target)
    summary = write_splits(split_examples(corpus(8)), link, dataset_name="d", description="x")
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert summary["total"] == 24 and (target / "README.md").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "v1"]


# --- coverage: every task with a few groups is tested ----------------------------------------------

# Hash points under the default seed (pinned in test_coverage_groups_are_as_assumed): all in train.
FEW_FORMULAS = ("formula:mol-0", "formula:mol-1", "formula:mol-3")  # 0.434, 0.614, 0.203
FORMULA_TASKS = ("formula_steps", "formula_next_step", "formula_author")


def formula_corpus(formulas, sessions: int = 30) -> list[dict]:
    """A few formula groups (three formula tasks each) among many session groups (agent_turns)."""
    out = [make_example(i, f"session-{i}", task="agent_turns") for i in range(sessions)]
    for k, name in enumerate(formulas):
        out += [make_example(1000 + 10 * k + j, name, task=t) for j, t in enumerate(FORMULA_TASKS)]
    return out


def split_of_groups(splits: dict[str, list[dict]]) -> dict[str, str]:
    return {row["group_id"]: name for name, rows in splits.items() for row in rows}


def test_coverage_groups_are_as_assumed():
    points = {g: round(split_point(g), 3) for g in (*FEW_FORMULAS, "formula:mol-5", "formula:mol-9")}
    assert points == {
        "formula:mol-0": 0.434,
        "formula:mol-1": 0.614,
        "formula:mol-3": 0.203,
        "formula:mol-5": 0.468,
        "formula:mol-9": 0.007,
    }
    assert assign_split("formula:mol-2") == "test" and assign_split("formula:mol-4") == "validation"


def test_few_formula_groups_still_get_a_test_group():
    examples = formula_corpus(FEW_FORMULAS)
    hashed = split_examples(examples, min_groups=0)  # the hash alone: every formula in train
    assert not {e["task"] for e in hashed["test"]} & set(FORMULA_TASKS)

    splits = split_examples(examples)
    where = split_of_groups(splits)
    # the formula nearest the test range moves there; three groups are too few for validation too
    assert where["formula:mol-1"] == "test"
    assert where["formula:mol-0"] == where["formula:mol-3"] == "train"
    assert set(FORMULA_TASKS) <= {e["task"] for e in splits["test"]}
    # nothing else moved
    others = {g: s for g, s in where.items() if not g.startswith("formula:")}
    assert others == {g: assign_split(g) for g in others}
    # deterministic, whatever the order
    shuffled = list(examples)
    random.Random(3).shuffle(shuffled)
    assert split_examples(shuffled) == splits

    # a fourth formula: a validation group too, and train keeps two
    where4 = split_of_groups(split_examples(formula_corpus((*FEW_FORMULAS, "formula:mol-5"))))
    formulas4 = {g: s for g, s in where4.items() if g.startswith("formula:")}
    assert formulas4 == {
        "formula:mol-1": "test",
        "formula:mol-5": "validation",
        "formula:mol-0": "train",
        "formula:mol-3": "train",
    }


def test_coverage_is_stable_when_groups_are_added():
    base = (*FEW_FORMULAS, "formula:mol-5")
    before = split_of_groups(split_examples(formula_corpus(base)))
    # a new formula far from test and validation, and more sessions: no existing group moves
    grown = formula_corpus((*base, "formula:mol-9"), sessions=60)
    after = split_of_groups(split_examples(grown))
    assert all(after[g] == s for g, s in before.items())
    assert after["formula:mol-9"] == "train"
    # a new formula that hashes into test takes over: the group moved for coverage goes back, only it
    took_over = split_of_groups(split_examples(formula_corpus((*base, "formula:mol-2"))))
    changed = {g for g, s in before.items() if took_over[g] != s}
    assert changed == {"formula:mol-1"} and took_over["formula:mol-1"] == "train"
    assert took_over["formula:mol-2"] == "test"


def test_coverage_never_takes_a_tasks_last_train_group():
    # mol-1 (the natural pick) also carries the only example of a rare task: mol-0 moves instead
    examples = formula_corpus(FEW_FORMULAS) + [make_example(2000, "formula:mol-1", task="rare")]
    where = split_of_groups(split_examples(examples))
    assert where["formula:mol-1"] == "train" and where["formula:mol-0"] == "test"


def test_coverage_gives_a_train_group_and_respects_zero_ratios():
    # three groups that all hash out of train: the lowest moves to train
    trio = ("formula:mol-2", "formula:mol-4", "formula:mol-7")  # test, validation, test
    where = split_of_groups(split_examples(formula_corpus(trio)))
    assert {g: where[g] for g in trio} == {
        "formula:mol-2": "test",
        "formula:mol-4": "train",
        "formula:mol-7": "test",
    }
    # a split the ratios leave empty is not filled
    assert split_examples(formula_corpus(FEW_FORMULAS), ratios=(1.0, 0.0, 0.0))["test"] == []


def test_coverage_warnings_name_tasks_and_families():
    from gastown_ft.corpus.splits import assign_groups, coverage_warnings

    examples = formula_corpus(FEW_FORMULAS[:2])  # two formulas: too few to move
    group_tasks: dict[str, set[str]] = {}
    for e in examples:
        group_tasks.setdefault(e["group_id"], set()).add(e["task"])
    assignment = assign_groups(group_tasks)
    assert assignment.moves == [] and "formula_steps" in assignment.missing("test")
    per_task = {
        name: dict(Counter(e["task"] for e in rows)) for name, rows in split_examples(examples).items()
    }
    warnings = coverage_warnings(
        assignment, per_task, {"exact": ("formula_steps", "bead_triage"), "command": ("bead_close",)}
    )
    assert any(w.startswith("task family `exact` has no test case") for w in warnings)
    assert not any("`command`" in w for w in warnings)  # no task of that family in the corpus
    assert "task `formula_steps` has no test example (only 2 groups, fewer than" in "\n".join(warnings)


def test_splits_stage_reports_coverage(tmp_path):
    import pyarrow as pa

    from gastown_ft.artifacts import ArtifactStore
    from gastown_ft.config import CorpusConfig
    from gastown_ft.corpus.splits import example_to_record
    from gastown_ft.corpus.stages import splits_stage

    store = ArtifactStore(tmp_path / "artifacts")
    examples = formula_corpus(FEW_FORMULAS)
    store.write_table(
        "corpus",
        "instruction_pairs",
        pa.Table.from_pylist([example_to_record(e) for e in examples], ROW_SCHEMA),
    )
    stats, _ = splits_stage(store, CorpusConfig())
    assert [m["group_id"] for m in stats["coverage_moves"]] == ["formula:mol-1"]
    assert set(FORMULA_TASKS) <= set(stats["by_split_and_task"]["test"])
    assert not any("formula" in w for w in stats["split_warnings"])
    card = (tmp_path / "artifacts" / "corpus" / "splits" / "README.md").read_text()
    assert "`formula:mol-1` moved from train to test" in card

    stats, _ = splits_stage(store, CorpusConfig(split_min_groups=0))
    assert stats["coverage_moves"] == []
    text = "\n".join(stats["split_warnings"])
    assert "task family `exact` has no test case" in text and "task family `authoring`" in text
    assert "task `formula_steps` has no test example" in text


def test_the_artifact_store_names_the_files_write_splits_writes(tmp_path):
    from gastown_ft.artifacts import ArtifactStore
    from gastown_ft.training.inputs import load_split_examples

    store = ArtifactStore(tmp_path / "artifacts")
    splits = split_examples(corpus(20))
    write_splits(splits, store.splits_dir(), dataset_name="d", description="x")
    for name in SPLITS:
        assert store.split_path(name).parent == store.splits_data_dir()
        assert store.split_path(name).exists() == bool(splits[name])
        assert len(load_split_examples(store, name)) == len(splits[name])
    assert len(load_split_examples(store, "train")) > 0
