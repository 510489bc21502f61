"""Train / validation / test splits by group, and the dataset on disk (Parquet + Hub dataset card).

The split of an example is a function of its `group_id` alone (the session, formula or bead it comes
from): sha256(seed + "\\0" + group_id), its first 8 bytes read as a big-endian integer and divided by
2**64, compared with the cumulative ratios. So every example of a group lands in the same split, and
an example keeps its split when data is added, removed or reordered, as long as seed and ratios stay.

Coverage (`assign_groups`): with few groups a task can land wholly in train (three formulas: about half
the time), and then nothing measures it. So for every task with at least `min_groups` groups (a group
counts for each task it has examples of), the split guarantees a test group, with one group more also
a validation group, and always a train group. Where the hash gives none, the group of that task nearest
to the split's range is moved into it (for test: the one with the highest point, as if the test range
reached down to it), never taking a task's last train group. Only those groups move, the rest keep
their hash split, and the moves follow from the groups alone: deterministic and independent of order.
A new group moves an earlier one back only when it takes over its role (it hashes into that split, or
lies nearer to it).

`write_splits` writes `data/{train,validation,test}.parquet` under one fixed Arrow schema (ROW_SCHEMA)
and a `README.md` dataset card whose YAML header (`dataset_info`, `configs`) is produced by `datasets`'
own helpers, the way `push_to_hub` writes it, so `datasets.load_dataset(out_dir)` reads it offline.
The directory is staged next to `out_dir` and swapped in with one rename.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from gastown_ft import atomic

logger = logging.getLogger(__name__)

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, Split, Split] = ("train", "validation", "test")
DEFAULT_SEED = "gastown-ft-v1"
DEFAULT_RATIOS = (0.8, 0.1, 0.1)
DEFAULT_MIN_GROUPS = 3  # a task with this many groups gets a test group (one more: a validation group)
DATA_DIR = "data"
CARD_NAME = "README.md"
ROW_GROUP_SIZE = 1000  # rows per Parquet row group (datasets' default writer batch size)

FUNCTION_TYPE = pa.struct([("name", pa.string()), ("arguments", pa.string())])
TOOL_CALL_TYPE = pa.struct([("id", pa.string()), ("type", pa.string()), ("function", FUNCTION_TYPE)])
MESSAGE_TYPE = pa.struct(
    [
        ("role", pa.string()),
        ("content", pa.string()),
        ("tool_calls", pa.list_(TOOL_CALL_TYPE)),
        ("tool_call_id", pa.string()),
        ("name", pa.string()),
    ]
)
# Every field nullable: datasets' Features carry no nullability, and a non-nullable field would make
# the written schema differ from the one `load_dataset` casts to. Required fields are checked in Python.
ROW_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("messages", pa.list_(MESSAGE_TYPE)),
        ("tools", pa.string()),  # JSON: a list of JSON-schema tool dicts (their schemas vary)
        ("task", pa.string()),
        ("rig", pa.string()),
        ("role", pa.string()),
        ("source_ids", pa.list_(pa.string())),
        ("quality", pa.float64()),
        ("weight", pa.float64()),
        ("group_id", pa.string()),
        ("source_time", pa.float64()),
    ]
)
ROW_FIELDS = tuple(ROW_SCHEMA.names)
MESSAGE_FIELDS = tuple(f.name for f in MESSAGE_TYPE)
TOOL_CALL_FIELDS = ("id", "type", "function")
FUNCTION_FIELDS = ("name", "arguments")
REQUIRED_STR = ("example_id", "task", "group_id")


# --- split assignment ----------------------------------------------------------------------------


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    if len(ratios) != 3:
        raise ValueError(f"ratios must be three numbers (train, validation, test), got {ratios!r}")
    r = tuple(float(x) for x in ratios)
    if any(x < 0 or x != x for x in r) or abs(sum(r) - 1.0) > 1e-9:
        raise ValueError(f"ratios must be non-negative and sum to 1, got {ratios!r}")
    return r  # type: ignore[return-value]


def split_point(group_id: str, *, seed: str = DEFAULT_SEED) -> float:
    """The group's position in [0, 1): sha256(seed + "\\0" + group_id), first 8 bytes / 2**64."""
    digest = hashlib.sha256(f"{seed}\0{group_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _check_group_id(group_id: Any) -> str:
    if not isinstance(group_id, str) or not group_id:
        raise ValueError(f"group_id must be a non-empty string, got {group_id!r}")
    return group_id


def _split_at(x: float, ratios: tuple[float, float, float]) -> Split:
    if x < ratios[0]:
        return "train"
    if x < ratios[0] + ratios[1]:
        return "validation"
    return "test"


def assign_split(
    group_id: str, *, seed: str = DEFAULT_SEED, ratios: Sequence[float] = DEFAULT_RATIOS
) -> Split:
    """The hash split of a group, "train", "validation" or "test": stable, independent of every other
    group. (`assign_groups` may move a few groups for coverage.)"""
    return _split_at(split_point(_check_group_id(group_id), seed=seed), _check_ratios(ratios))


@dataclass
class Move:
    """A group moved out of its hash split so that `task` has a group in `to`."""

    group_id: str
    hashed: Split
    to: Split
    task: str


@dataclass
class SplitAssignment:
    splits: dict[str, Split]  # group_id -> split
    moves: list[Move] = field(default_factory=list)
    groups_per_task: dict[str, dict[str, int]] = field(default_factory=dict)  # task -> split -> groups
    min_groups: int = DEFAULT_MIN_GROUPS
    ratios: tuple[float, float, float] = DEFAULT_RATIOS

    def missing(self, split: Split) -> list[str]:
        """Tasks with no group in `split`, sorted."""
        return sorted(t for t, per in self.groups_per_task.items() if not per.get(split))


def assign_groups(
    group_tasks: Mapping[str, Iterable[str]],
    *,
    seed: str = DEFAULT_SEED,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    min_groups: int = DEFAULT_MIN_GROUPS,
) -> SplitAssignment:
    """The split of every group (`group_tasks`: group_id -> the tasks of its examples): the hash split,
    then the few moves that give every task with at least `min_groups` groups a train and a test group,
    and with `min_groups + 1` a validation group (see the module docstring). `min_groups` 0: no moves.
    A split whose ratio is 0 is never filled."""
    r = _check_ratios(ratios)
    points: dict[str, float] = {}
    tasks_of: dict[str, tuple[str, ...]] = {}
    groups_of: dict[str, list[str]] = {}
    for group_id, tasks in group_tasks.items():
        points[group_id] = split_point(_check_group_id(group_id), seed=seed)
        tasks_of[group_id] = tuple(sorted({str(t) for t in tasks}))
        for task in tasks_of[group_id]:
            groups_of.setdefault(task, []).append(group_id)
    current: dict[str, Split] = {g: _split_at(x, r) for g, x in points.items()}
    count: dict[str, dict[str, int]] = {t: dict.fromkeys(SPLITS, 0) for t in groups_of}
    for g, split in current.items():
        for task in tasks_of[g]:
            count[task][split] += 1
    out = SplitAssignment(splits=current, groups_per_task=count, min_groups=min_groups, ratios=r)
    if min_groups <= 0:
        return out

    def move(g: str, to: Split, task: str) -> None:
        out.moves.append(Move(g, _split_at(points[g], r), to, task))
        for t in tasks_of[g]:
            count[t][current[g]] -= 1
            count[t][to] += 1
        current[g] = to

    def takes_last_train(g: str) -> bool:
        return current[g] == "train" and any(count[t]["train"] == 1 for t in tasks_of[g])

    # Which group of a task moves: the one nearest the split's range (train: the lowest point; test and
    # validation: the highest below them), so a move is where a slightly wider range would have put it.
    # Validation passes over the group test takes (or would take, had the hash given no test group):
    # so a new group hashed into test sends back only the group moved there, not the validation one too.
    for target, need, sources in (
        ("train", min_groups, ("validation", "test")),
        ("test", min_groups, ("train", "validation")),
        ("validation", min_groups + 1, ("train",)),
    ):
        if r[SPLITS.index(target)] == 0:
            continue
        for task in sorted(groups_of):
            groups = groups_of[task]
            if len(groups) < need or count[task][target]:
                continue
            ranked = sorted(groups, key=lambda g: (points[g], g), reverse=target != "train")
            if target == "validation":
                reserved = next((g for g in ranked if _split_at(points[g], r) != "test"), None)
                ranked = [g for g in ranked if g != reserved] + ([reserved] if reserved else [])
            for g in ranked:
                if current[g] in sources and not takes_last_train(g):
                    move(g, target, task)
                    break
    return out


def split_examples(
    examples: Iterable[dict],
    *,
    seed: str = DEFAULT_SEED,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    min_groups: int = DEFAULT_MIN_GROUPS,
) -> dict[str, list[dict]]:
    """The examples by split (all three keys present), each list sorted by (example_id, group_id)."""
    examples = list(examples)
    group_tasks: dict[str, set[str]] = {}
    for example in examples:
        group_id = _check_group_id(example.get("group_id"))
        group_tasks.setdefault(group_id, set()).add(str(example.get("task")))
    assignment = assign_groups(group_tasks, seed=seed, ratios=ratios, min_groups=min_groups)
    out: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for example in examples:
        out[assignment.splits[example["group_id"]]].append(example)
    for rows in out.values():
        rows.sort(key=lambda e: (str(e.get("example_id")), str(e.get("group_id"))))
    return out


def coverage_warnings(
    assignment: SplitAssignment,
    examples_per_task: Mapping[str, Mapping[str, int]],
    families: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """What the test split cannot measure: each task (and each family of `families`, name -> tasks)
    with no test example, and why. `examples_per_task`: split -> task -> examples."""
    tested = {t for t, n in examples_per_task.get("test", {}).items() if n}
    warnings = []
    for family, tasks in (families or {}).items():
        present = [t for t in tasks if t in assignment.groups_per_task]
        if present and not tested & set(tasks):
            warnings.append(
                f"task family `{family}` has no test case (its tasks {', '.join(present)} are all in "
                "train or validation): the evaluation does not measure it"
            )
    for task in sorted(assignment.groups_per_task):
        if task in tested:
            continue
        n = sum(assignment.groups_per_task[task].values())
        if assignment.ratios[2] == 0:
            why = "the test ratio of corpus.split_ratios is 0"
        elif assignment.min_groups <= 0:
            why = f"{n} group{'s' if n != 1 else ''}, and corpus.split_min_groups = 0 turns coverage off"
        elif n < assignment.min_groups:
            why = f"only {n} group{'s' if n != 1 else ''}, fewer than corpus.split_min_groups = {assignment.min_groups}"
        else:
            why = "no group could move to test without taking the last training group of a task"
        warnings.append(f"task `{task}` has no test example ({why})")
    return warnings


def corpus_version(splits: dict[str, Sequence[dict]]) -> str:
    """sha256 over the sorted example_ids of each split (the splits in SPLITS order, then any others)."""
    return corpus_version_of_ids({name: [e["example_id"] for e in rows] for name, rows in splits.items()})


def corpus_version_of_ids(ids: dict[str, Sequence[Any]]) -> str:
    """`corpus_version` from the example ids of each split."""
    h = hashlib.sha256(b"gastown-ft-corpus\n")
    for name in [*SPLITS, *sorted(set(ids) - set(SPLITS))]:
        h.update(f"[{name}]\n".encode())
        for example_id in sorted(str(e) for e in ids.get(name, ())):
            h.update(example_id.encode() + b"\n")
    return h.hexdigest()


def coverage_summary(
    assignment: SplitAssignment,
    examples_per_task: Mapping[str, Mapping[str, int]],
    families: Mapping[str, Sequence[str]] | None = None,
) -> dict:
    """The coverage facts for the stage's metadata and the dataset card."""
    return {
        "min_groups": assignment.min_groups,
        "coverage_moves": [
            {"group_id": m.group_id, "hashed": m.hashed, "to": m.to, "task": m.task} for m in assignment.moves
        ],
        "warnings": coverage_warnings(assignment, examples_per_task, families),
    }


# --- rows <-> Arrow records ----------------------------------------------------------------------


def _opt_str(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{what} must be a string or None, got {type(value).__name__}")


def _tool_call_record(call: Any, where: str) -> dict:
    if not isinstance(call, dict):
        raise ValueError(f"{where}: a tool call must be a dict, got {type(call).__name__}")
    extra = set(call) - set(TOOL_CALL_FIELDS)
    if extra:
        raise ValueError(f"{where}: unknown tool call keys {sorted(extra)}")
    function = call.get("function")
    if function is not None:
        if not isinstance(function, dict):
            raise ValueError(f"{where}: function must be a dict")
        extra = set(function) - set(FUNCTION_FIELDS)
        if extra:
            raise ValueError(f"{where}: unknown function keys {sorted(extra)}")
        function = {
            "name": _opt_str(function.get("name"), f"{where}.function.name"),
            "arguments": _opt_str(function.get("arguments"), f"{where}.function.arguments (a JSON string)"),
        }
    return {
        "id": _opt_str(call.get("id"), f"{where}.id"),
        "type": _opt_str(call.get("type"), f"{where}.type"),
        "function": function,
    }


def _message_record(message: Any, where: str) -> dict:
    if not isinstance(message, dict):
        raise ValueError(f"{where}: a message must be a dict, got {type(message).__name__}")
    extra = set(message) - set(MESSAGE_FIELDS)
    if extra:
        raise ValueError(
            f"{where}: unknown message keys {sorted(extra)} (the schema has {list(MESSAGE_FIELDS)})"
        )
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if not isinstance(tool_calls, list):
            raise ValueError(f"{where}.tool_calls must be a list")
        tool_calls = [_tool_call_record(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(tool_calls)]
    return {
        "role": _opt_str(message.get("role"), f"{where}.role"),
        "content": _opt_str(message.get("content"), f"{where}.content"),
        "tool_calls": tool_calls,
        "tool_call_id": _opt_str(message.get("tool_call_id"), f"{where}.tool_call_id"),
        "name": _opt_str(message.get("name"), f"{where}.name"),
    }


def _float(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {type(value).__name__}")
    return float(value)


def example_to_record(example: dict) -> dict:
    """The Arrow record of an example row (unknown top-level keys are left out)."""
    where = f"example {example.get('example_id')!r}"
    for key in REQUIRED_STR:
        if not isinstance(example.get(key), str) or not example[key]:
            raise ValueError(f"{where}: {key} must be a non-empty string")
    messages = example.get("messages")
    if not isinstance(messages, list):
        raise ValueError(f"{where}: messages must be a list")
    tools = example.get("tools")
    if tools is None:
        tools = []
    if not isinstance(tools, list):
        raise ValueError(f"{where}: tools must be a list of JSON-schema dicts")
    source_ids = example.get("source_ids") or []
    if not isinstance(source_ids, list) or not all(isinstance(s, str) for s in source_ids):
        raise ValueError(f"{where}: source_ids must be a list of strings")
    return {
        "example_id": example["example_id"],
        "messages": [_message_record(m, f"{where}.messages[{i}]") for i, m in enumerate(messages)],
        "tools": json.dumps(tools, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
        "task": example["task"],
        "rig": _opt_str(example.get("rig"), f"{where}.rig"),
        "role": _opt_str(example.get("role"), f"{where}.role"),
        "source_ids": list(source_ids),
        "quality": _float(example.get("quality"), f"{where}.quality"),
        "weight": _float(example.get("weight"), f"{where}.weight"),
        "group_id": example["group_id"],
        "source_time": _float(example.get("source_time"), f"{where}.source_time"),
    }


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def example_from_record(record: dict) -> dict:
    """The example row of a record read back (from Parquet or `datasets`): tools parsed, absent keys
    of messages / tool calls (stored as null) left out again, so a written example round-trips."""
    out = dict(record)
    out["tools"] = json.loads(record["tools"]) if record.get("tools") else []
    messages = []
    for message in record.get("messages") or []:
        m = _drop_none(message)
        if m.get("tool_calls") is not None:
            m["tool_calls"] = [
                {**_drop_none(c), **({"function": _drop_none(c["function"])} if c.get("function") else {})}
                for c in m["tool_calls"]
            ]
        messages.append(m)
    out["messages"] = messages
    return out


# --- writing -------------------------------------------------------------------------------------


def _features():
    from datasets import Features

    return Features.from_arrow_schema(ROW_SCHEMA)


def _write_parquet(tables: pa.Table | Iterable[pa.Table], path: Path) -> None:
    """One split's file: a table, or tables (one schema) written as they come. Rows are handed to the
    writer in whole row groups, so the file is byte for byte the one a single table would give."""
    from datasets import config as ds_config

    parts = iter([tables] if isinstance(tables, pa.Table) else tables)
    first = next(parts)
    cdc = ds_config.DEFAULT_CDC_OPTIONS
    with pq.ParquetWriter(
        path, first.schema, use_content_defined_chunking=cdc, write_page_index=True
    ) as writer:
        writer.add_key_value_metadata({"content_defined_chunking": json.dumps(cdc)})
        held: list[pa.Table] = []
        n_held = 0
        for table in itertools.chain([first], parts):
            held.append(table)
            n_held += table.num_rows
            if n_held >= ROW_GROUP_SIZE:
                rows = pa.concat_tables(held)
                whole = n_held - n_held % ROW_GROUP_SIZE
                writer.write_table(rows.slice(0, whole), row_group_size=ROW_GROUP_SIZE)
                held, n_held = [rows.slice(whole)], n_held - whole
        if n_held or first.num_rows == 0:
            writer.write_table(pa.concat_tables(held) if held else first, row_group_size=ROW_GROUP_SIZE)


def _uncompressed_bytes(path: Path) -> int:
    """The split's size as num_bytes: its uncompressed column data, read from the Parquet footer.
    (Arrow's in-memory size would depend on how the table happens to be laid out in memory.)"""
    meta = pq.read_metadata(path)
    return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))


def _dataset_card(
    *,
    dataset_name: str,
    description: str,
    features,
    split_infos: list[tuple[str, int, int]],
    download_size: int,
    summary: dict,
    seed: str,
    ratios: tuple[float, float, float],
) -> str:
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    splits = SplitDict()
    for name, num_bytes, num_examples in split_infos:
        splits.add(SplitInfo(name=name, num_bytes=num_bytes, num_examples=num_examples))
    info = DatasetInfo(
        features=features,
        splits=splits,
        download_size=download_size,
        dataset_size=sum(num_bytes for _n, num_bytes, _e in split_infos),
    )
    card_data = DatasetCardData(
        pretty_name=dataset_name,
        task_categories=["text-generation"],
        tags=["gastown", "chat", "tool-use", "agents"],
    )
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    MetadataConfigs(
        {
            "default": {
                "data_files": [
                    {"split": name, "path": f"{DATA_DIR}/{name}.parquet"} for name, _b, _n in split_infos
                ]
            }
        }
    ).to_dataset_card_data(card_data)
    card = DatasetCard(
        f"---\n{card_data}\n---\n" + _card_body(dataset_name, description, summary, seed, ratios)
    )
    return str(card)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _card_body(
    dataset_name: str, description: str, summary: dict, seed: str, ratios: tuple[float, float, float]
) -> str:
    counts = summary["num_examples"]
    tasks = sorted(summary["tasks"])
    lines = [
        "",
        f"# {dataset_name}",
        "",
        description.strip(),
        "",
        "Instruction-tuning examples built from a Gas Town town by the gastown-ft pipeline: chat",
        "conversations in the format shared by TRL, OpenAI fine-tuning and Hugging Face chat templates",
        "(`messages` with roles system / user / assistant / tool, `tool_calls` on assistant turns, `tools`",
        "as JSON schema).",
        "",
        f"Corpus version: `{summary['version']}` (sha256 over the sorted example ids of each split).",
        "",
        "## Contents",
        "",
        "| split | examples |",
        "| --- | ---: |",
        *(f"| {name} | {counts[name] or '0 (empty: no file)'} |" for name in SPLITS),
        f"| **total** | {summary['total']} |",
        "",
        "Examples per task:",
        "",
        "| task | " + " | ".join(SPLITS) + " | total |",
        "| --- | " + " | ".join("---:" for _ in SPLITS) + " | ---: |",
    ]
    for task in tasks:
        per = [summary["tasks_per_split"][name].get(task, 0) for name in SPLITS]
        lines.append(
            f"| {_md_escape(task)} | " + " | ".join(str(n) for n in per) + f" | {summary['tasks'][task]} |"
        )
    lines += [
        "",
        "## Fields",
        "",
        "- `example_id`: content hash of the messages.",
        "- `messages`: the conversation; each message has `role`, `content`, and where they apply",
        "  `tool_calls` (`id`, `type` = `function`, `function.name`, `function.arguments` as a JSON string),",
        "  `tool_call_id` (on tool results) and `name`. Keys a message does not have are null.",
        "- `tools`: the tools offered, a JSON string holding a list of JSON-schema tool definitions",
        "  (`json.loads` it; stored as a string because the schemas differ from tool to tool).",
        "- `task`, `rig`, `role`: what the example teaches, and the Gas Town rig and agent role it comes from.",
        "- `source_ids`: the source documents; `group_id`: the session, formula or bead it comes from.",
        "- `quality` (0..1) and `weight`: the example's quality score and its training weight.",
        "- `source_time`: modification time or timestamp of the newest source (Unix seconds).",
        "",
        "## Splits",
        "",
        "The split of an example depends only on its `group_id`: `sha256(seed + '\\0' + group_id)` with seed",
        f"`{seed}`, its first 8 bytes as a big-endian integer divided by 2^64, gives a point `x` in [0, 1);",
        f"`x < {ratios[0]:g}` is train, `x < {ratios[0] + ratios[1]:g}` validation, the rest test. So all",
        "examples of one session, formula or bead are in the same split (no leakage between splits), and an",
        "example never changes split when the corpus is rebuilt with more data.",
        _coverage_rule(summary.get("min_groups", DEFAULT_MIN_GROUPS)),
        "",
        *_coverage_lines(summary),
        "## Use",
        "",
        "```python",
        "import json",
        "",
        "from datasets import load_dataset",
        "",
        'ds = load_dataset("path/to/this/directory")  # or the Hub repository id',
        'row = ds["train"][0]',
        'messages = [{k: v for k, v in m.items() if v is not None} for m in row["messages"]]',
        'tools = json.loads(row["tools"])',
        "```",
        "",
        "Intended for supervised fine-tuning of a language model to act as a Gas Town agent (mayor, deacon,",
        "witness, refinery, polecat, crew): following role conventions, running `gt` and `bd` commands,",
        "working formulas and beads. The examples come from one town's sessions and records, after",
        "scrubbing and deduplication; they reflect that town's work and are not a general-purpose benchmark.",
        "",
    ]
    return "\n".join(lines)


def _coverage_rule(min_groups: int) -> str:
    if min_groups <= 0:
        return "Coverage moves are off (`split_min_groups = 0`): the hash alone decides."
    return (
        f"One exception keeps every task measurable: a task with at least {min_groups} groups gets a test"
        f" group (with {min_groups + 1}, also a validation group) where the hash gives it none; the group"
        " of that task nearest to that split moves there (listed under Coverage)."
    )


def _coverage_lines(summary: dict) -> list[str]:
    moves, warnings = summary.get("coverage_moves") or [], summary.get("warnings") or []
    if not moves and not warnings:
        return []
    lines = ["## Coverage", ""]
    lines += [
        f"- group `{_md_escape(m['group_id'])}` moved from {m['hashed']} to {m['to']} so that task"
        f" `{_md_escape(m['task'])}` has a {m['to']} group"
        for m in moves
    ]
    lines += [f"- WARNING: {_md_escape(w)}" for w in warnings]
    return [*lines, ""]


def write_splits(
    splits: dict[str, list[dict]],
    out_dir: Path,
    *,
    dataset_name: str,
    description: str,
    seed: str = DEFAULT_SEED,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    coverage: dict | None = None,
) -> dict:
    """Write `out_dir/data/{train,validation,test}.parquet` and `out_dir/README.md`, replacing `out_dir`
    in one step. `seed` and `ratios` are only described in the card (pass those the splits were made with);
    so is `coverage` (`min_groups`, `coverage_moves`, `warnings`: see `coverage_summary`).

    Returns a summary: counts per split and per task, sizes, the corpus version, the files, and the
    names of row keys that are not in the schema and were left out.
    """
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split names {sorted(unknown)}; expected {list(SPLITS)}")
    ratios = _check_ratios(ratios)
    out_dir = Path(out_dir)
    if out_dir.is_symlink():  # replace the directory the link points to, keep the link
        out_dir = out_dir.resolve()
    features = _features()
    schema = features.arrow_schema  # ROW_SCHEMA plus the "huggingface" metadata datasets reads back

    tables: dict[str, pa.Table] = {}
    dropped_fields: set[str] = set()
    for name in SPLITS:
        rows = sorted(splits.get(name, []), key=lambda e: (str(e.get("example_id")), str(e.get("group_id"))))
        records = []
        for row in rows:
            dropped_fields.update(set(row) - set(ROW_FIELDS))
            records.append(example_to_record(row))
        tables[name] = pa.Table.from_pylist(records, schema=schema)
    if dropped_fields:
        logger.info("write_splits: row keys not in the schema were left out: %s", sorted(dropped_fields))
    return write_split_tables(
        tables,
        out_dir,
        dataset_name=dataset_name,
        description=description,
        seed=seed,
        ratios=ratios,
        dropped_fields=dropped_fields,
        coverage=coverage,
    )


def write_split_tables(
    tables: Mapping[str, pa.Table | Iterable[pa.Table]],
    out_dir: Path,
    *,
    dataset_name: str,
    description: str,
    seed: str = DEFAULT_SEED,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    dropped_fields: set[str] | frozenset[str] = frozenset(),
    coverage: dict | None = None,
) -> dict:
    """`write_splits` for splits already as Arrow tables of ROW_SCHEMA, each sorted by
    (example_id, group_id): the same files, without a round trip through Python rows.

    A split may also come as an iterable of tables, in that order (their rows one after the other):
    then it is written as it arrives, and only a row group is held at a time."""
    unknown = set(tables) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split names {sorted(unknown)}; expected {list(SPLITS)}")
    ratios = _check_ratios(ratios)
    out_dir = Path(out_dir)
    if out_dir.is_symlink():  # replace the directory the link points to, keep the link
        out_dir = out_dir.resolve()
    features = _features()
    schema = features.arrow_schema

    with atomic.staged_dir(out_dir, owned=_OWNED) as staged:
        (staged / DATA_DIR).mkdir()
        version = hashlib.sha256(b"gastown-ft-corpus\n")  # corpus_version_of_ids, as the rows pass
        tallies: dict[str, _SplitTally] = {}
        split_infos = []
        download_size = 0
        for name in SPLITS:
            part = tables.get(name)
            parts = [part] if isinstance(part, pa.Table) else (part or [])
            tally = tallies[name] = _SplitTally(name, version)
            rows = (tally.add(t.select(list(ROW_FIELDS)).cast(schema)) for t in parts if t.num_rows)
            first = next(rows, None)
            if first is None:
                # datasets cannot load a split with no rows: an empty split gets no file and no card entry
                logger.warning("write_splits: the %s split is empty; it is left out of %s", name, out_dir)
                continue
            path = staged / DATA_DIR / f"{name}.parquet"
            _write_parquet(itertools.chain([first], rows), path)
            download_size += path.stat().st_size
            split_infos.append((name, _uncompressed_bytes(path), tally.rows))
        tasks: Counter[str] = Counter()
        for tally in tallies.values():
            tasks.update(tally.tasks)
        summary: dict[str, Any] = {
            "dataset_name": dataset_name,
            "version": version.hexdigest(),
            "num_examples": {name: tallies[name].rows for name in SPLITS},
            "total": sum(t.rows for t in tallies.values()),
            "tasks": dict(sorted(tasks.items())),
            "tasks_per_split": {name: dict(sorted(tallies[name].tasks.items())) for name in SPLITS},
            "files": {name: f"{DATA_DIR}/{name}.parquet" for name in SPLITS if tallies[name].rows},
            "dropped_fields": sorted(dropped_fields),
            **(coverage or {}),
        }
        summary["num_bytes"] = {name: 0 for name in SPLITS} | {name: b for name, b, _n in split_infos}
        summary["download_size"] = download_size
        summary["dataset_size"] = sum(summary["num_bytes"].values())
        card = _dataset_card(
            dataset_name=dataset_name,
            description=description,
            features=features,
            split_infos=split_infos,
            download_size=download_size,
            summary=summary,
            seed=seed,
            ratios=ratios,
        )
        (staged / CARD_NAME).write_text(card, encoding="utf-8")
    summary["out_dir"] = str(out_dir)
    return summary


class _SplitTally:
    """Rows, tasks and the corpus-version hash of one split, from its tables as they are written.
    The hash takes the ids in the order they come, so they must come sorted (checked)."""

    def __init__(self, name: str, version) -> None:
        self.name, self.version = name, version
        self.rows = 0
        self.tasks: Counter[str] = Counter()
        self.last: str | None = None
        self.version.update(f"[{name}]\n".encode())

    def add(self, table: pa.Table) -> pa.Table:
        self.rows += table.num_rows
        self.tasks.update(table.column("task").to_pylist())
        for example_id in table.column("example_id").to_pylist():
            example_id = str(example_id)
            if self.last is not None and example_id < self.last:
                raise ValueError(f"the {self.name} split is not sorted by example_id")
            self.version.update(example_id.encode() + b"\n")
            self.last = example_id
        return table


# The entries of the splits directory this module writes; any others there survive a rewrite.
_OWNED = frozenset({DATA_DIR, CARD_NAME})
