"""Generalization: bead requests phrased the way operators type them, in words no corpus template uses.

The task suite's prompts come from the test split, so they share the pair builders' phrasings with
the training examples. These cases do not: casual, terse, lower-case, out-of-order requests written
by hand. Each is checked like a suite command case (the command parses against the CLI grammar, with
the expected subcommand and flags; for `bd create` also the type and priority). The score is reported
beside the suite (`generalization`), not folded into it.
"""

from __future__ import annotations

import json

from gastown_ft.corpus.examples import BASH_TOOL, system_prompt
from gastown_ft.evaluation.generate import Prompt
from gastown_ft.evaluation.tasks import TaskCase

# (task, rig, request, expected command)
CASES: tuple[tuple[str, str, str, str], ...] = (
    (
        "bead_create",
        "ledger",
        "ugh, the payee matcher keeps lumping 'Amazon' and 'Amazon Prime' together. put that in as a "
        "bug for me? pretty important, call it p1",
        'bd create "Payee matcher confuses Amazon with Amazon Prime" -t bug -p 1',
    ),
    (
        "bead_create",
        "ledger",
        "Need a ticket for dark mode in the budget report. It's a feature, not urgent at all — P3.",
        'bd create "Dark mode for the budget report" -t feature -p 3',
    ),
    (
        "bead_create",
        "courier",
        "someone should write integration tests for the retry queue. log it as a task, medium prio",
        'bd create "Integration tests for the retry queue" -t task -p 2',
    ),
    (
        "bead_create",
        "courier",
        "CRITICAL: signature check still accepts expired HMAC keys!!! bug, P0, now",
        'bd create "Signature check accepts expired HMAC keys" -t bug -p 0',
    ),
    (
        "bead_create",
        "ledger",
        "lowest priority chore (4) whenever anyone has time: clean up the old Makefile targets",
        'bd create "Clean up the old Makefile targets" -t chore -p 4',
    ),
    (
        "bead_create",
        "courier",
        "we're rewriting the admin API; record an epic for it, priority one",
        'bd create "Admin API rewrite" -t epic -p 1',
    ),
    ("bead_update", "ledger", "i'm picking up le-9fz now, put it on me", "bd update le-9fz --claim"),
    (
        "bead_update",
        "courier",
        "co-4kd isn't that important anymore, knock it down to P4",
        "bd update co-4kd --priority 4",
    ),
    (
        "bead_update",
        "ledger",
        "hold off on le-2mb for now, we'll come back to it after the release (defer)",
        "bd update le-2mb --status deferred",
    ),
    (
        "bead_update",
        "ledger",
        "le-77a is stuck waiting on the bank's API keys, flip it to blocked",
        "bd update le-77a --status blocked",
    ),
    (
        "bead_close",
        "courier",
        "co-abq shipped in 9c1e2f0 - close it out with that as the reason",
        'bd close co-abq --reason "Shipped in 9c1e2f0"',
    ),
    (
        "bead_close",
        "ledger",
        "wrap up le-k3p, it turned out to be a duplicate of le-k1z",
        'bd close le-k3p --reason "Duplicate of le-k1z"',
    ),
    (
        "bead_deps",
        "ledger",
        "le-5tt can't go ahead until le-5ts lands. wire that up in beads",
        "bd dep add le-5tt le-5ts",
    ),
    (
        "bead_deps",
        "courier",
        "co-8m2 belongs under the epic co-8m0, hook up the parent link",
        "bd dep add co-8m2 co-8m0 --type parent-child",
    ),
    (
        "formula_vars",
        "ledger",
        "kick off mol-polecat-work on bead hq-3kz",
        "bd mol pour mol-polecat-work --var issue=hq-3kz",
    ),
)


def paraphrase_cases() -> list[TaskCase]:
    """The hand-written cases as suite command cases (system prompt and tools as the corpus has them)."""
    out = []
    for i, (task, rig, request, command) in enumerate(CASES):
        messages = [
            {"role": "system", "content": system_prompt(None, rig)},
            {"role": "user", "content": request},
        ]
        reference = {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": f"call_paraphrase_{i}",
                    "type": "function",
                    "function": {"name": "Bash", "arguments": json.dumps({"command": command})},
                }
            ],
        }
        out.append(
            TaskCase(
                case_id=f"paraphrase:{i}:{task}",
                task=task,
                family="command",
                prompt=Prompt(messages=messages, tools=[BASH_TOOL]),
                reference=reference,
            )
        )
    return out
