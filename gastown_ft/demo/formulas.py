"""Formulas of the demo town in three tiers: embedded (in the first rig's internal/), town, rig.

All four formula types appear. Shadowing is deliberate: the town overrides the embedded
`mol-polecat-work` and `mol-town-shutdown`; the first rig overrides the town's `mol-polecat-work`
and the second rig the town's `mol-escalation`.
"""

from __future__ import annotations

import json
from typing import Any

from gastown_ft.demo import tomlout
from gastown_ft.demo.world import World


def step(id: str, title: str, description: str, needs: list[str] | None = None, **extra: Any) -> dict:
    s: dict[str, Any] = {"id": id, "title": title}
    if needs:
        s["needs"] = needs
    s.update(extra)
    s["description"] = description.strip("\n")
    return s


def var(description: str, *, required: bool = False, default: str | None = None) -> dict:
    v: dict[str, Any] = {"description": description}
    if required:
        v["required"] = True
    if default is not None:
        v["default"] = default
    return v


def chain(steps: list[dict]) -> list[dict]:
    """Make each step need the one before it (unless it already says what it needs)."""
    for prev, cur in zip(steps, steps[1:], strict=False):
        cur.setdefault("needs", [prev["id"]])
    return steps


# ------------------------------------------------------------------------------------------------
# Embedded tier: the copies a `gt` binary ships (here under the first rig's internal/ tree).
# ------------------------------------------------------------------------------------------------


def embedded_polecat_work() -> dict:
    return {
        "formula": "mol-polecat-work",
        "description": """
Stock lifecycle for a polecat working one hooked issue, from first prime to `gt done`.

Every step can be resumed: if the session dies, the next session re-primes, sees the
molecule on its hook and continues from the first unfinished step.

Rules of the road:
- Never push to main. The refinery merges from the merge queue.
- Never close your own issue. The refinery closes it after the merge lands.
- `gt done` is the last thing you do. After it you are gone.""",
        "type": "workflow",
        "version": 6,
        "vars": {
            "issue": var("Bead id of the hooked issue", required=True),
            "base_branch": var("Branch to start from and rebase onto", default="main"),
            "test_command": var("How this rig runs its tests; empty means skip", default=""),
        },
        "steps": chain(
            [
                step(
                    "load-context",
                    "Prime and read the assignment",
                    """
Load role and beads context, then read what you were given.

```bash
gt prime
gt hook                 # the molecule and the hooked bead
bd show {{issue}}
gt mail inbox           # anything the mayor or witness left for you
```

If `bd show` hangs, check `gt dolt status` and escalate instead of retrying forever.""",
                ),
                step(
                    "branch",
                    "Create a work branch",
                    """
```bash
git fetch origin
git checkout -b polecat/$GT_POLECAT/{{issue}} origin/{{base_branch}}
```
One branch per issue. Reuse it if it already exists from an earlier session.""",
                ),
                step(
                    "implement",
                    "Do the work",
                    """
Make the change the issue asks for, nothing more. Keep commits small and say why in the
message. If you find unrelated problems, file them instead of fixing them:

```bash
bd create "Found while working {{issue}}: <what>" -t bug -p 2 --deps discovered-from:{{issue}}
```""",
                ),
                step(
                    "test",
                    "Run the tests",
                    """
```bash
{{test_command}}
```
A failure you caused: fix it. A failure that was already on {{base_branch}}: note it on the
issue with `bd comments add {{issue}} "pre-existing failure: ..."` and carry on.""",
                ),
                step(
                    "submit",
                    "Push and hand to the merge queue",
                    """
```bash
git push -u origin HEAD
gt done
```
`gt done` files the merge request, tells the witness, and ends this session.""",
                ),
            ]
        ),
    }


def embedded_witness_patrol() -> dict:
    return {
        "formula": "mol-witness-patrol",
        "description": """
One cycle of the witness watching a rig's polecats.

The witness does not write code. It reads mail, scans the polecats, nudges the slow ones,
restarts dead sessions and escalates what it cannot fix. Then it reports and loops.""",
        "type": "workflow",
        "version": 4,
        "vars": {
            "rig": var("Rig this witness watches", required=True),
            "stall_minutes": var("Minutes without output before a nudge", default="20"),
        },
        "steps": chain(
            [
                step(
                    "inbox-check",
                    "Drain and read mail",
                    """
```bash
gt mail drain --identity {{rig}}/witness --max-age 30m
gt mail inbox
```
POLECAT_DONE: acknowledge and archive. HELP: read it, help or escalate. HANDOFF: absorb the
notes from your previous session, then archive.""",
                ),
                step(
                    "survey-workers",
                    "Scan polecats",
                    """
```bash
gt patrol scan --rig {{rig}} --notify
gt polecat list {{rig}} --json
```
The scan restarts dead sessions and reports completions; do not second-guess it by hand.""",
                ),
                step(
                    "nudge-stalled",
                    "Nudge anyone quiet for too long",
                    """
For each polecat with no output for {{stall_minutes}} minutes:
```bash
gt peek {{rig}}/<name> -n 40
gt nudge {{rig}}/polecats/<name> "Still on it? Reply or ask for help."
```
Two unanswered nudges in a row: `gt escalate -s MEDIUM "{{rig}}/<name> unresponsive"`.""",
                ),
                step(
                    "check-refinery",
                    "Is the merge queue moving?",
                    """
```bash
gt mq list {{rig}}
```
A merge request older than an hour with no progress is worth a mail to the refinery.""",
                ),
                step(
                    "report",
                    "Close the cycle",
                    """
```bash
gt patrol report --summary "<one line: who is working, who finished, what you escalated>"
```
Then start the next cycle, or `gt handoff` if your context is getting full.""",
                ),
            ]
        ),
    }


def embedded_refinery_patrol() -> dict:
    return {
        "formula": "mol-refinery-patrol",
        "description": """
The refinery's merge loop: take the next merge request, rebase it, test it, land it.

Main must stay green. A branch that fails its tests goes back to its author with the
failure attached; it never lands "just this once".""",
        "type": "workflow",
        "version": 5,
        "vars": {
            "rig": var("Rig whose queue this refinery serves", required=True),
            "target_branch": var("Branch merges land on", default="main"),
            "test_command": var("Gate command run before every merge", default=""),
        },
        "steps": chain(
            [
                step(
                    "inbox-check",
                    "Read MERGE_READY and REWORK mail",
                    """
```bash
gt mail inbox
```""",
                ),
                step(
                    "queue-scan",
                    "Pick the next merge request",
                    """
```bash
gt mq list {{rig}} --ready
gt mq next {{rig}} --json
```
Nothing ready: skip to the last step.""",
                ),
                step(
                    "rebase",
                    "Rebase onto the target",
                    """
```bash
git fetch origin
git checkout -B temp origin/<branch>
git rebase origin/{{target_branch}}
```
Conflicts you cannot resolve mechanically:
`gt mq reject {{rig}} <mr> --reason "conflicts in <files>" --notify`.""",
                ),
                step(
                    "run-tests",
                    "Gate the merge",
                    """
```bash
{{test_command}}
```
Failing: `gt mq reject {{rig}} <mr> --reason "tests fail: <first failure>" --notify`,
then go back to queue-scan.""",
                ),
                step(
                    "merge-push",
                    "Land it and clean up",
                    """
```bash
git push origin temp:{{target_branch}}
gt mq post-merge {{rig}} <mr>
bd close <source-issue> --reason "Merged in <short sha>"
gt mail send {{rig}}/witness -s "MERGED <mr>" -m "<branch> landed as <short sha>"
```""",
                ),
                step(
                    "loop",
                    "More work or hand off",
                    """
Go back to queue-scan while the queue has ready work. When it is empty, write a one-line
summary with `gt patrol report` and wait for the next MERGE_READY.""",
                ),
            ]
        ),
    }


def embedded_town_shutdown() -> dict:
    return {
        "formula": "mol-town-shutdown",
        "description": """
Stop every agent in the town without losing work, then bring it back.

Sandboxes and hooks survive: a polecat that was mid-task resumes it after the restart.""",
        "type": "workflow",
        "version": 2,
        "steps": chain(
            [
                step(
                    "preflight",
                    "Look before you stop",
                    """
```bash
gt shutdown preflight
```
A merge in progress is a blocker. Uncommitted polecat work is only a warning.""",
                ),
                step(
                    "stop-sessions",
                    "Stop agent sessions",
                    """
```bash
gt down --polecats
gt down
```""",
                ),
                step(
                    "verify",
                    "Nothing left running",
                    """
```bash
gt agents list
gt dolt status
```""",
                ),
                step(
                    "restart",
                    "Start the town again",
                    """
```bash
gt up
gt feed --since 5m
```""",
                ),
            ]
        ),
    }


def embedded_code_review() -> dict:
    return {
        "formula": "code-review",
        "description": """
Review a change from several angles at once. Each leg runs as its own polecat; a final
synthesis merges their findings into one prioritised list.""",
        "type": "convoy",
        "version": 1,
        "inputs": {
            "branch": {
                "description": "Branch to review (diffed against main)",
                "type": "string",
                "required": True,
            },
            "depth": {"description": "quick or thorough", "type": "string", "default": "quick"},
        },
        "prompts": {
            "base": """
You are one reviewer in a convoy reviewing branch {{branch}} ({{depth}} pass).
Read the diff with `git diff origin/main...{{branch}}`. Stay inside your focus; other legs
cover the rest. Report findings as a list with file:line, severity (P0-P3) and a fix.""",
        },
        "output": {"directory": ".reviews/{{branch}}", "leg_pattern": "{leg}.md", "synthesis": "summary.md"},
        "legs": [
            {
                "id": "correctness",
                "title": "Correctness",
                "focus": "Logic errors and edge cases",
                "description": "Walk every changed branch of control flow. Empty inputs, off-by-one, "
                "error paths that swallow the error.",
            },
            {
                "id": "security",
                "title": "Security",
                "focus": "Secrets, injection, unsafe input",
                "description": "Look for credentials in code or tests, shell commands built from input, "
                "and paths that trust user data.",
            },
            {
                "id": "tests",
                "title": "Test quality",
                "focus": "Do the tests prove the change?",
                "description": "Would the new tests fail without the change? Are they testing behaviour "
                "or implementation details?",
            },
        ],
        "synthesis": {
            "title": "Merge the findings",
            "description": """
Read every leg's file, drop duplicates, order by severity and write summary.md.
End with a verdict: approve, approve with nits, or request changes.""",
            "depends_on": ["correctness", "security", "tests"],
        },
    }


def embedded_rule_of_five() -> dict:
    return {
        "formula": "rule-of-five",
        "description": "Expansion: replace one step with a draft and four refinement passes, "
        "each pass looking at the work with fresh eyes.",
        "type": "expansion",
        "version": 1,
        "template": [
            {
                "id": "{target}.draft",
                "title": "Draft: {target.title}",
                "description": "Get a complete first version of {target.title} down. Breadth over polish.",
            },
            {
                "id": "{target}.correct",
                "title": "Pass 2: is it right?",
                "needs": ["{target}.draft"],
                "description": "Read the draft against the requirements. Fix what is wrong, not what is ugly.",
            },
            {
                "id": "{target}.clear",
                "title": "Pass 3: is it clear?",
                "needs": ["{target}.correct"],
                "description": "Rename, reorder and cut until a newcomer could follow it.",
            },
            {
                "id": "{target}.edges",
                "title": "Pass 4: what breaks it?",
                "needs": ["{target}.clear"],
                "description": "Empty input, huge input, concurrent callers, a dead dependency.",
            },
            {
                "id": "{target}.final",
                "title": "Pass 5: ship it",
                "needs": ["{target}.edges"],
                "description": "One last read, then commit with a message that says what changed and why.",
            },
        ],
    }


# ------------------------------------------------------------------------------------------------
# Town tier: <town>/.beads/formulas/
# ------------------------------------------------------------------------------------------------


def town_polecat_work() -> dict:
    f = embedded_polecat_work()
    f["description"] = """
Town override of the polecat lifecycle: the stock steps plus a mail check before starting
and a pre-verify run after the rebase, so the refinery can fast-path the merge.

Same contract as the stock formula: no pushes to main, no closing your own issue,
`gt done` is your last act."""
    f["version"] = 7
    f["steps"] = chain(
        [
            f["steps"][0],
            step(
                "check-mail",
                "Read mail before touching code",
                """
```bash
gt mail inbox
gt mail read <id>      # for anything addressed to you about {{issue}}
```
A REWORK_REQUEST from the refinery means your last merge request bounced; fix that first.""",
                needs=["load-context"],
            ),
            {**f["steps"][1], "needs": ["check-mail"]},
            f["steps"][2],
            f["steps"][3],
            step(
                "pre-verify",
                "Rebase and re-run the gates",
                """
```bash
git fetch origin && git rebase origin/{{base_branch}}
{{test_command}}
```
Green after the rebase means `gt done --pre-verified` is honest.""",
                needs=["test"],
            ),
            step(
                "submit",
                "Push and hand to the merge queue",
                """
```bash
git push -u origin HEAD
gt done --pre-verified
```""",
                needs=["pre-verify"],
            ),
        ]
    )
    return f


def town_shutdown() -> dict:
    f = embedded_town_shutdown()
    f["description"] = """
Town override of the shutdown: tells the overseer before and after, and waits for the
refineries to finish any merge in flight."""
    f["version"] = 3
    f["vars"] = {"reason": var("Why the town is going down (goes into the notices)", required=True)}
    first = step(
        "announce",
        "Tell everyone",
        """
```bash
gt mail send mayor/ -s "Town shutdown: {{reason}}" -m "Stopping all agents in 5 minutes."
gt broadcast "Shutdown in 5 minutes ({{reason}}). Commit and push what you have."
```""",
    )
    drain = step(
        "drain-merges",
        "Let the refineries finish",
        """
```bash
gt mq list ledger --status=processing
gt mq list courier --status=processing
```
Wait until neither shows a merge in progress.""",
        needs=["announce"],
    )
    rest = f["steps"]
    rest[0]["needs"] = ["drain-merges"]
    f["steps"] = [first, drain, *rest]
    return f


def town_convoy_cleanup() -> dict:
    return {
        "formula": "mol-convoy-cleanup",
        "description": """
Close out a convoy whose tracked issues have all landed: check, summarise, notify, archive.
Run by a dog or the deacon when `gt convoy check` reports a convoy as complete.""",
        "type": "workflow",
        "version": 2,
        "vars": {"convoy": var("Convoy bead id (hq-cv-...)", required=True)},
        "steps": chain(
            [
                step(
                    "load-convoy",
                    "Confirm the convoy is really done",
                    """
```bash
gt convoy status {{convoy}}
bd show {{convoy}}
```
Any tracked issue still open: stop here, this is not a cleanup yet.""",
                ),
                step(
                    "summarise",
                    "Write the digest",
                    """
Collect the closed issues and their merge commits into a short digest:
```bash
bd list --parent {{convoy}} --status=closed --json
```""",
                ),
                step(
                    "notify",
                    "Tell the mayor",
                    """
```bash
gt mail send mayor/ -s "Convoy landed: {{convoy}}" -m "<digest>"
```""",
                ),
                step(
                    "close",
                    "Close and land",
                    """
```bash
gt convoy land {{convoy}}
bd close {{convoy}} --reason "All tracked issues merged"
```""",
                ),
            ]
        ),
    }


def town_escalation() -> dict:
    # No `type` key: a workflow by default.
    return {
        "formula": "mol-escalation",
        "description": """
How any agent asks for help it cannot get locally. Escalations climb: witness, then deacon,
then mayor, then the overseer. Say what you tried; an escalation without evidence comes back.""",
        "version": 1,
        "vars": {
            "severity": var("LOW, MEDIUM, HIGH or CRITICAL", default="MEDIUM"),
            "summary": var("One line: what is wrong", required=True),
        },
        "steps": chain(
            [
                step(
                    "gather",
                    "Collect the evidence",
                    """
The failing command, its output (trimmed), the bead you were on (`gt hook`), and what you
already tried. Never paste tokens or .env contents into an escalation.""",
                ),
                step(
                    "file",
                    "File it",
                    """
```bash
gt escalate -s {{severity}} "{{summary}}" --reason "<evidence>"
```""",
                ),
                step(
                    "park",
                    "Park your work",
                    """
```bash
bd update <issue> --status=blocked
bd comments add <issue> "Escalated: {{summary}}"
```
Then stop. Do not keep retrying the thing that failed.""",
                ),
            ]
        ),
    }


def town_design_review() -> dict:
    return {
        "formula": "design-review",
        "description": """
A convoy for reviewing a design doc before an epic is sliced into work: three readers with
different concerns, then a synthesis the mayor can act on.""",
        "type": "convoy",
        "version": 1,
        "inputs": {
            "doc": {"description": "Path of the design doc in the rig", "type": "string", "required": True},
            "epic": {"description": "Epic bead the design belongs to", "type": "string", "required": True},
        },
        "prompts": {
            "base": """
Read {{doc}} (for epic {{epic}}). You are one of three reviewers; stick to your focus.
Write at most one page: what is missing, what is risky, what you would cut."""
        },
        "output": {
            "directory": ".designs/{{epic}}",
            "leg_pattern": "{leg}-notes.md",
            "synthesis": "verdict.md",
        },
        "legs": [
            {
                "id": "scope",
                "title": "Scope",
                "focus": "Is this the smallest thing that works?",
                "description": "Find parts that could wait for a second epic.",
            },
            {
                "id": "operability",
                "title": "Operability",
                "focus": "Who gets paged when it breaks?",
                "description": "Logging, rollback, what the witness and deacon can see.",
            },
            {
                "id": "slicing",
                "title": "Slicing",
                "focus": "Can polecats work on it in parallel?",
                "description": "Propose child beads with dependencies; flag anything that serialises.",
            },
        ],
        "synthesis": {
            "title": "Verdict",
            "description": """
Combine the notes into go / go-with-changes / rethink, plus the child beads to create with
`bd create --parent {{epic}}`.""",
            "depends_on": ["scope", "operability", "slicing"],
        },
    }


def town_deacon_patrol_json() -> dict:
    return {
        "formula": "mol-deacon-patrol",
        "description": "Town-level health loop run by the deacon: agents, Dolt, convoys, escalations.",
        "type": "workflow",
        "version": 3,
        "vars": {
            "max_restarts": {"description": "Restarts per agent per hour before escalating", "default": "3"}
        },
        "steps": [
            {
                "id": "heartbeat",
                "title": "Check agent heartbeats",
                "description": "Run `gt agents list` and `gt patrol scan --json`. A witness or refinery "
                "without a session gets restarted; more than {{max_restarts}} restarts in "
                "an hour becomes `gt escalate -s HIGH`.",
            },
            {
                "id": "dolt",
                "title": "Check Dolt",
                "needs": ["heartbeat"],
                "description": "Run `gt dolt status`. The server listens on 127.0.0.1:3307; if it is "
                "read-only, run `gt dolt recover` once, then escalate.",
            },
            {
                "id": "convoys",
                "title": "Feed stranded convoys",
                "needs": ["dolt"],
                "description": "Run `gt convoy stranded`. Ready work with no worker gets slung: "
                "`gt sling <bead> <rig>`. Completed convoys get mol-convoy-cleanup.",
            },
            {
                "id": "escalations",
                "title": "Route escalations",
                "needs": ["convoys"],
                "description": "Run `gt escalate list`. Acknowledge what you can handle; forward the "
                'rest with `gt mail send mayor/ -s "..." -m "..."`.',
            },
            {
                "id": "report",
                "title": "Report and sleep",
                "needs": ["escalations"],
                "description": 'Close the cycle with `gt patrol report --summary "..."`.',
            },
        ],
    }


def town_cycle_formula() -> dict:
    """Bad input: three steps that need each other in a circle."""
    return {
        "formula": "mol-rig-rebalance",
        "description": "Move idle polecats from a quiet rig to a busy one.",
        "type": "workflow",
        "version": 1,
        "steps": [
            step(
                "count-work",
                "Count ready work per rig",
                "```bash\nbd ready --json\n```",
                needs=["move-polecats"],
            ),
            step(
                "pick-donor",
                "Pick the quietest rig",
                "Fewest ready beads, most idle polecats.",
                needs=["count-work"],
            ),
            step(
                "move-polecats",
                "Move them",
                "```bash\ngt polecat list <rig> --json\n```",
                needs=["pick-donor"],
            ),
        ],
    }


# ------------------------------------------------------------------------------------------------
# Rig tier: <rig>/mayor/rig/.beads/formulas/ (the canonical clone)
# ------------------------------------------------------------------------------------------------


def ledger_polecat_work() -> dict:
    f = town_polecat_work()
    f["description"] = """
Ledger's own polecat lifecycle. Same shape as the town's, with ledger's tooling filled in:
the importer tests need the fixture CSVs, and money code must keep Decimal end to end."""
    f["version"] = 8
    f["vars"]["test_command"] = var("Ledger's test gate", default="uv run pytest -q")
    impl = next(s for s in f["steps"] if s["id"] == "implement")
    impl["description"] += """

Ledger specifics: never use float for amounts (`decimal.Decimal` only), and add a fixture
under tests/fixtures/ for every new CSV dialect you support."""
    return f


def ledger_secrets_guard() -> dict:
    return {
        "formula": "secrets-guard",
        "description": "Aspect: scan for credentials before anything is committed or submitted.",
        "type": "aspect",
        "version": 1,
        "advice": [
            {
                "target": "implement",
                "around": {
                    "before": [
                        {
                            "id": "{step.id}-secrets-baseline",
                            "title": "Secrets baseline for {step.id}",
                            "description": "Record the current findings: `gitleaks detect --no-git -v` "
                            "so new ones stand out.",
                        }
                    ],
                    "after": [
                        {
                            "id": "{step.id}-secrets-diff",
                            "title": "New secrets after {step.id}?",
                            "description": "Run the scan again. Anything new: remove it, rotate it, and "
                            '`gt escalate -s HIGH "secret committed in {step.id}"`.',
                        }
                    ],
                },
            },
            {
                "target": "submit",
                "before": {
                    "id": "{step.id}-env-check",
                    "title": "No .env in the diff",
                    "description": "`git diff --name-only origin/main | grep -E '\\.env|\\.pem$'` "
                    "must print nothing.",
                },
            },
        ],
        "pointcuts": [{"glob": "implement"}, {"glob": "submit"}, {"glob": "*.implement"}],
    }


def ledger_unknown_step_formula() -> dict:
    """Bad input: a step needs an id that no step has."""
    return {
        "formula": "mol-flaky-triage",
        "description": "Sort a flaky test into quarantine, fix or delete.",
        "type": "workflow",
        "version": 1,
        "steps": [
            step("reproduce", "Run it fifty times", "```bash\nuv run pytest -q --count 50 {{test_id}}\n```"),
            step("classify", "Decide", "Timing, ordering or real bug?", needs=["reproduce", "collect-logs"]),
        ],
        "vars": {"test_id": var("pytest node id", required=True)},
    }


def courier_escalation() -> dict:
    f = town_escalation()
    f["description"] = """
Courier's escalation path. Delivery outages page a human directly, because dropped webhooks
cannot be replayed after 24 hours."""
    f["type"] = "workflow"
    f["version"] = 2
    f["vars"]["severity"] = var("LOW, MEDIUM, HIGH or CRITICAL", default="HIGH")
    f["steps"].insert(
        2,
        step(
            "check-dlq",
            "Is mail piling up?",
            """
```bash
go run ./cmd/courierctl dlq stats
```
More than 500 messages in the dead-letter queue makes this CRITICAL.""",
            needs=["file"],
        ),
    )
    f["steps"][3]["needs"] = ["check-dlq"]
    return f


def courier_release(npm_token: str) -> dict:
    return {
        "formula": "courier-release",
        "description": """
Cut a courier release: tag the Go service and publish the JS client to npm.
Run by crew only; polecats never publish.""",
        "type": "workflow",
        "version": 3,
        "vars": {
            "version": var("Semver to release, without the v", required=True),
            "npm_token": var("Token for publishing @courier/client (rotate after use)", default=npm_token),
        },
        "steps": chain(
            [
                step(
                    "changelog",
                    "Write the changelog",
                    """
List merged work since the last tag:
```bash
git log --oneline $(git describe --tags --abbrev=0)..HEAD
```""",
                ),
                step(
                    "tag",
                    "Tag the service",
                    """
```bash
go test ./...
git tag -a v{{version}} -m "courier {{version}}"
git push origin v{{version}}
```""",
                ),
                step(
                    "publish-client",
                    "Publish the JS client",
                    """
```bash
cd clients/js
NPM_TOKEN={{npm_token}} npm publish --access public
```""",
                ),
                step(
                    "announce",
                    "Tell the town",
                    """
```bash
gt mail send mayor/ -s "courier v{{version}} released" -m "Changelog attached; client on npm."
```""",
                ),
            ]
        ),
    }


def courier_tdd_cycle() -> dict:
    return {
        "formula": "tdd-cycle",
        "description": "Expansion: turn one implementation step into red, green, refactor. "
        "The tests are committed before the code so they cannot be bent to fit it.",
        "type": "expansion",
        "version": 1,
        "template": [
            {
                "id": "{target}.red",
                "title": "Failing test for {target.title}",
                "description": "Write the test, run `go test ./...`, watch it fail, commit it alone: "
                '`git commit -m "test: {target.title}"`.',
            },
            {
                "id": "{target}.green",
                "title": "Make it pass",
                "needs": ["{target}.red"],
                "description": "Smallest change that turns the suite green. Do not edit the test.",
            },
            {
                "id": "{target}.refactor",
                "title": "Tidy up",
                "needs": ["{target}.green"],
                "description": "Improve names and structure with the suite green after every change. "
                "{target.description}",
            },
        ],
    }


INVALID_TOML = '''# Hotfix lane for courier: skip the convoy, go straight to the refinery.
formula = "mol-hotfix"
description = """
Ship a one-line fix fast. Still goes through the merge queue.
"""
type = "workflow"
version = 1

[[steps]]
id = "patch"
title = "Write the fix
description = "Smallest possible diff. Reference the incident bead."

[[steps]
id = "submit"
needs = ["patch"]
description = "gt done --priority 0"
'''


_KEY_ORDER = ("id", "title", "needs")


def _tidy(doc: dict) -> dict:
    """Steps, legs and template items read best as id, title, needs, ..., description."""
    for key in ("steps", "template", "legs"):
        for i, item in enumerate(doc.get(key, [])):
            head = {k: item[k] for k in _KEY_ORDER if k in item}
            mid = {k: v for k, v in item.items() if k not in _KEY_ORDER and k != "description"}
            tail = {"description": item["description"]} if "description" in item else {}
            doc[key][i] = {**head, **mid, **tail}
    return doc


def _trim(value: Any) -> Any:
    """Multi-line strings lose the blank first line they get from triple-quoted literals."""
    if isinstance(value, str):
        return value.strip("\n") if "\n" in value else value
    if isinstance(value, dict):
        return {k: _trim(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_trim(v) for v in value]
    return value


def _toml(doc: dict, comment: str = "") -> str:
    return tomlout.dumps(_tidy(_trim(doc)), comment)


def build_formulas(w: World) -> dict[str, str]:
    """Formula files keyed by path relative to the town root."""
    first, second = w.rigs[0].clone, w.rigs[1].clone  # rig formulas live in the canonical clones
    npm_path = f"{second}/.beads/formulas/courier-release.formula.toml"
    npm_token = w.planter.new("npm_token", npm_path)
    emb = f"{first}/internal/formula/formulas"
    files = {
        f"{emb}/mol-polecat-work.formula.toml": _toml(embedded_polecat_work()),
        f"{emb}/mol-witness-patrol.formula.toml": _toml(embedded_witness_patrol()),
        f"{emb}/mol-refinery-patrol.formula.toml": _toml(embedded_refinery_patrol()),
        f"{emb}/mol-town-shutdown.formula.toml": _toml(embedded_town_shutdown()),
        f"{emb}/code-review.formula.toml": _toml(
            embedded_code_review(),
            "Convoy review: one polecat per leg, then a synthesis.\n"
            "Usage: gt formula run code-review --branch=<branch>",
        ),
        f"{emb}/rule-of-five.formula.toml": _toml(embedded_rule_of_five()),
        ".beads/formulas/mol-polecat-work.formula.toml": _toml(
            town_polecat_work(), "Town override of the embedded mol-polecat-work."
        ),
        ".beads/formulas/mol-town-shutdown.formula.toml": _toml(town_shutdown()),
        ".beads/formulas/mol-convoy-cleanup.formula.toml": _toml(town_convoy_cleanup()),
        ".beads/formulas/mol-escalation.formula.toml": _toml(town_escalation()),
        ".beads/formulas/design-review.formula.toml": _toml(town_design_review()),
        ".beads/formulas/mol-deacon-patrol.formula.json": json.dumps(
            _trim(town_deacon_patrol_json()), indent=2
        )
        + "\n",
        f"{first}/.beads/formulas/mol-polecat-work.formula.toml": _toml(
            ledger_polecat_work(), "Ledger override: shadows the town's mol-polecat-work."
        ),
        f"{first}/.beads/formulas/secrets-guard.formula.toml": _toml(ledger_secrets_guard()),
        f"{second}/.beads/formulas/mol-escalation.formula.toml": _toml(courier_escalation()),
        npm_path: _toml(courier_release(npm_token)),
        f"{second}/.beads/formulas/tdd-cycle.formula.toml": _toml(courier_tdd_cycle()),
    }
    return files


def bad_formulas(w: World) -> tuple[dict[str, str], list[tuple[str, str]]]:
    first, second = w.rigs[0].clone, w.rigs[1].clone
    files = {
        ".beads/formulas/mol-rig-rebalance.formula.toml": _toml(town_cycle_formula()),
        f"{first}/.beads/formulas/mol-flaky-triage.formula.toml": _toml(ledger_unknown_step_formula()),
        f"{second}/.beads/formulas/mol-hotfix.formula.toml": INVALID_TOML,
    }
    reasons = [
        (".beads/formulas/mol-rig-rebalance.formula.toml", "needs_cycle"),
        (f"{first}/.beads/formulas/mol-flaky-triage.formula.toml", "unknown_step"),
        (f"{second}/.beads/formulas/mol-hotfix.formula.toml", "invalid_toml"),
    ]
    return files, reasons
