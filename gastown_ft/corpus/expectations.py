"""Great Expectations suites for each corpus stage: schema, no secret residue, token lengths,
roles in order, no group in two splits.

Plain Python: each function takes rows, runs a suite on an ephemeral GX context, and returns one
`CheckOutcome` per check, which the Dagster layer reports as blocking asset checks.

The residue patterns are deliberately independent of the scrubber: a second, simple line of defence
for the token shapes that must never reach a corpus.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

from gastown_ft.corpus.examples import example_tokens

log = logging.getLogger(__name__)
_batch_seq = itertools.count()  # unique GX asset names within one process

RESIDUE_PATTERNS: tuple[str, ...] = (
    r"\bAKIA[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{36}\b",
    r"\bgithub_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}\b",
    r"\bhf_[A-Za-z]{34}\b",
    r"\bsk-ant-[A-Za-z0-9_\-]{20,}",
    r"\bsk-proj-[A-Za-z0-9_\-]{20,}",
    r"\bxox[baprs]-[A-Za-z0-9\-]{10,}",
    r"\b[rs]k_live_[A-Za-z0-9]{16,}",
    r"\bAIza[0-9A-Za-z_\-]{35}",
    r"\bnpm_[A-Za-z0-9]{36}\b",
    r"\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{20,}",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    # An email address of a person: `git@host:owner/repo` is an SSH remote and noreply@ a robot, and
    # `logo@2x.png` is a file (the scrubber keeps all three, by the same rules).
    r"(?<![A-Za-z0-9._%+\-])(?!(?:git|noreply|no-reply)@)[A-Za-z0-9._%+\-]+@[A-Za-z][A-Za-z0-9\-]*"
    r"(?:\.[A-Za-z0-9\-]+)*\.(?!(?:png|jpe?g|gif|svg|txt|md|json|toml|ya?ml|py|go|js|ts|rs|sh|lock|log)\b)"
    r"[A-Za-z]{2,}\b",
)

# Roles as one letter each (s, u, a, t): an optional system prompt, a user turn first, tool results
# only after an assistant turn or another result, and an assistant turn last.
ROLE_LETTERS = {"system": "s", "user": "u", "assistant": "a", "tool": "t"}
ROLE_ORDER_REGEX = r"^s?u(?:u|a|(?<=[at])t)*a$"

EXAMPLE_COLUMNS = (
    "example_id",
    "messages",
    "tools",
    "task",
    "rig",
    "role",
    "source_ids",
    "quality",
    "weight",
    "group_id",
    "source_time",
)


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    description: str
    details: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=1)
def _context():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


@cache
def _pandas_source(name: str):
    # Added once per process: each add_or_update rewrites the context's YAML config (~30 ms).
    return _context().data_sources.add_or_update_pandas(f"gastown_ft_{name}")


def _forget_batches(source) -> None:
    """Drop the data source's execution engine: it keeps every batch it validated (the frame and its
    metrics) for the life of the process, so memory grew with each batch of a streamed stage. The
    next validation builds a fresh engine."""
    source._execution_engine = None


def _validate(name: str, frame, expectations: list[tuple[str, str, Any]]) -> list[CheckOutcome]:
    """Run (check name, description, expectation) triples against a pandas frame."""
    import great_expectations as gx

    source = _pandas_source(name)
    seq = next(_batch_seq)
    asset = source.add_dataframe_asset(name=f"{name}_{seq}")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame})
    suite = gx.ExpectationSuite(name=f"{name}_{seq}")
    for _, _, exp in expectations:
        suite.add_expectation(exp)
    try:
        result = batch.validate(suite)
    finally:
        source.delete_asset(asset.name)  # the context would otherwise keep every batch's frame
        _forget_batches(source)
    outcomes: dict[str, CheckOutcome] = {}
    for (check, description, _), res in zip(expectations, result.results, strict=True):
        out = outcomes.setdefault(check, CheckOutcome(check, True, description))
        out.passed = out.passed and bool(res.success)
        r = res.result or {}
        if not res.success:
            out.details.setdefault("failed", []).append(
                {
                    "expectation": res.expectation_config.type,
                    "unexpected_count": r.get("unexpected_count"),
                    "examples": [str(x)[:200] for x in (r.get("partial_unexpected_list") or [])[:5]],
                    "observed": str(r.get("observed_value"))[:200] if "observed_value" in r else None,
                }
            )
    return list(outcomes.values())


def _residue_frame(rows: list[dict[str, Any]]):
    import pandas as pd

    return pd.DataFrame(
        {"scan": [f"{r.get('text') or ''}\n{r.get('title') or ''}\n{r.get('meta') or ''}" for r in rows]}
    )


class DocumentChecks:
    """scrubbed_documents, checked batch by batch (memory stays at one batch): schema and no secret
    pattern left in text, title or meta."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = list(columns)
        self.ids: list[str | None] = []
        self.missing_columns: set[str] = set()
        self.residue: list[CheckOutcome] = []

    def add(self, rows: list[dict[str, Any]], *, record_ids: bool = True) -> None:
        """Check a batch for residue; its ids join the schema check unless given by `add_ids`."""
        import great_expectations as gx

        if not rows:
            return
        if record_ids:
            self.ids += [r.get("doc_id") for r in rows]
        self.missing_columns |= {c for c in self.columns for r in rows[:1] if c not in r}
        E = gx.expectations
        self.residue += _validate(
            "documents",
            _residue_frame(rows),
            [
                (
                    "no_secret_residue",
                    "no token, key or email shape left in text, title or meta",
                    E.ExpectColumnValuesToNotMatchRegexList(column="scan", regex_list=list(RESIDUE_PATTERNS)),
                ),
            ],
        )

    def add_ids(self, ids: list[str | None]) -> None:
        """Ids of rows whose residue check passed in an earlier build (reused unchanged)."""
        self.ids += ids

    def outcomes(self) -> list[CheckOutcome]:
        import great_expectations as gx
        import pandas as pd

        E = gx.expectations
        frame = pd.DataFrame(
            {"doc_id": self.ids, "missing_columns": len(self.ids) * [len(self.missing_columns)]}
        )
        out = _validate(
            "document_ids",
            frame,
            [
                (
                    "schema",
                    "every column present; ids unique and never null",
                    E.ExpectColumnValuesToBeInSet(column="missing_columns", value_set=[0]),
                ),
                ("schema", "", E.ExpectColumnValuesToNotBeNull(column="doc_id")),
                ("schema", "", E.ExpectColumnValuesToBeUnique(column="doc_id")),
            ],
        )
        residue = CheckOutcome(
            "no_secret_residue", True, "no token, key or email shape left in text, title or meta"
        )
        for o in self.residue:
            residue.passed = residue.passed and o.passed
            for failed in o.details.get("failed", []):
                residue.details.setdefault("failed", []).append(failed)
        return [*out, residue]


def validate_documents(rows: list[dict[str, Any]], columns: list[str]) -> list[CheckOutcome]:
    """scrubbed_documents in one go (see DocumentChecks for the batch-wise form)."""
    checks = DocumentChecks(columns)
    checks.add(rows)
    return checks.outcomes()


def _flatten(example: dict[str, Any]) -> str:
    parts = []
    for m in example["messages"]:
        parts.append(m.get("content") or "")
        parts += [c["function"]["arguments"] for c in m.get("tool_calls") or []]
    return "\n".join(parts)


def validate_examples(examples: list[dict[str, Any]], max_tokens: int) -> list[CheckOutcome]:
    """instruction_pairs: schema, no secret residue, token lengths within budget, roles in order."""
    import great_expectations as gx
    import pandas as pd

    frame = pd.DataFrame(
        {
            "example_id": [e.get("example_id") for e in examples],
            "task": [e.get("task") for e in examples],
            "group_id": [e.get("group_id") for e in examples],
            "missing_fields": [len([c for c in EXAMPLE_COLUMNS if c not in e]) for e in examples],
            "text": [_flatten(e) for e in examples],
            "tokens": [example_tokens(e) for e in examples],
            "roles": ["".join(ROLE_LETTERS.get(m.get("role"), "?") for m in e["messages"]) for e in examples],
        }
    )
    E = gx.expectations
    return _validate(
        "examples",
        frame,
        [
            (
                "schema",
                "every example has all fields; ids unique; task and group set",
                E.ExpectColumnValuesToBeInSet(column="missing_fields", value_set=[0]),
            ),
            ("schema", "", E.ExpectColumnValuesToBeUnique(column="example_id")),
            ("schema", "", E.ExpectColumnValuesToNotBeNull(column="task")),
            ("schema", "", E.ExpectColumnValuesToNotBeNull(column="group_id")),
            (
                "no_secret_residue",
                "no token, key or email shape left in any message",
                E.ExpectColumnValuesToNotMatchRegexList(column="text", regex_list=list(RESIDUE_PATTERNS)),
            ),
            (
                "token_lengths",
                f"every example fits the model budget of {max_tokens} tokens",
                E.ExpectColumnValuesToBeBetween(column="tokens", min_value=1, max_value=max_tokens),
            ),
            (
                "roles_in_order",
                "system?, user first, tool results after assistant calls, assistant last",
                E.ExpectColumnValuesToMatchRegex(column="roles", regex=ROLE_ORDER_REGEX),
            ),
        ],
    )


def validate_new_examples(
    examples: list[dict[str, Any]], all_ids: list[str], max_tokens: int
) -> list[CheckOutcome]:
    """instruction_pairs when only `examples` are new to the table: the per-example checks of
    `validate_examples` run on them (the others passed them in an earlier build, unchanged), and the
    one check that spans the table, unique example ids, runs on `all_ids`."""
    import great_expectations as gx
    import pandas as pd

    outcomes = validate_examples(examples, max_tokens)
    unique = _validate(
        "example_ids",
        pd.DataFrame({"example_id": all_ids}),
        [("schema", "", gx.expectations.ExpectColumnValuesToBeUnique(column="example_id"))],
    )[0]
    for o in outcomes:
        if o.name == "schema":
            o.passed = o.passed and unique.passed
            o.details.setdefault("failed", []).extend(unique.details.get("failed", []))
            if not o.details["failed"]:
                del o.details["failed"]
    return outcomes


def validate_splits(splits: dict[str, list[dict[str, Any]]]) -> list[CheckOutcome]:
    """corpus_splits: known split names, and no group in two splits."""
    import great_expectations as gx
    import pandas as pd

    groups: dict[str, set[str]] = {}
    for split, rows in splits.items():
        for r in rows:
            groups.setdefault(r["group_id"], set()).add(split)
    frame = pd.DataFrame({"group_id": list(groups), "splits": [len(v) for v in groups.values()]})
    names = pd.DataFrame({"split": list(splits)})
    E = gx.expectations
    out = _validate(
        "splits",
        frame,
        [
            (
                "no_group_in_two_splits",
                "each group (session, formula, bead) lies in exactly one split",
                E.ExpectColumnValuesToBeBetween(column="splits", min_value=1, max_value=1),
            ),
        ],
    )
    out += _validate(
        "split_names",
        names,
        [
            (
                "schema",
                "splits are train, validation and test",
                E.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "validation", "test"]),
            ),
        ],
    )
    return out
