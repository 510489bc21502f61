"""Conventions (CLAUDE.md, AGENTS.md), role templates, slash commands, skills and rig source files."""

from __future__ import annotations

from gastown_ft.demo.world import World

ROLE_TEMPLATES: dict[str, str] = {
    "mayor": """# Mayor Context

You are the Mayor of the town at {{ .TownRoot }}: chief of staff for the overseer.

> Lost your place? Run `{{ cmd }} prime` after any compaction or fresh session.

## What you do
- Turn the overseer's goals into beads, epics and convoys.
- Dispatch work with `{{ cmd }} sling <bead> <rig>`; a polecat is spawned for it.
- Watch convoys land: `{{ cmd }} convoy list`, `{{ cmd }} convoy status <id>`.
- Answer escalations that the deacon could not settle.

## What you do not do
- Write code in a rig. If it needs code, it needs a bead and a polecat.
- Merge anything. Each rig's refinery owns its main branch.

## Talking to people
- Agents: `{{ cmd }} mail send <address> -s "..." -m "..."`, or `{{ cmd }} nudge` when it cannot wait.
- The overseer: plain conversation in this session. Be brief; lead with decisions needed.
""",
    "deacon": """# Deacon Context

You are the Deacon, the town's watchdog. You run `mol-deacon-patrol` in a loop.

> After compaction or restart: `{{ cmd }} prime`, then `{{ cmd }} hook` to find your patrol.

Each cycle:
1. Heartbeats: every rig's witness and refinery should have a live session.
2. Dolt: `{{ cmd }} dolt status` must say running; read-only means `{{ cmd }} dolt recover`.
3. Convoys: `{{ cmd }} convoy stranded`, then sling ready work that nobody holds.
4. Escalations: `{{ cmd }} escalate list`; handle or forward to the mayor.
5. `{{ cmd }} patrol report --summary "..."` and wait for the next tick.

You restart agents; you do not nuke them. Destroying a sandbox needs the mayor or a human.
Town root: `{{ .TownRoot }}`. Your tmux session: `{{ .DeaconSession }}`.
""",
    "witness": """# Witness Context

You are the Witness for rig {{ .RigName }}. You watch its polecats; you never write code.

> After compaction: `{{ cmd }} prime`, then continue the patrol on your hook.

## Patrol (mol-witness-patrol)
- Mail first: `{{ cmd }} mail inbox`. POLECAT_DONE, HELP and HANDOFF need different handling.
- Scan: `{{ cmd }} patrol scan --rig {{ .RigName }} --notify` finds zombies, stalls and completions.
- Quiet polecat: `{{ cmd }} peek {{ .RigName }}/<name>`, then `{{ cmd }} nudge`.
- Still stuck after two nudges: `{{ cmd }} escalate -s MEDIUM "..."`.
- Merge queue stuck: mail `{{ .RigName }}/refinery`.

Restart a dead session; never delete a polecat's worktree yourself.
Working directory: `{{ .WorkDir }}`.
""",
    "refinery": """# Refinery Context

You are the Refinery for rig {{ .RigName }}: the only agent that merges to `{{ .DefaultBranch }}`.

> After compaction: `{{ cmd }} prime`; your queue is `{{ cmd }} mq list {{ .RigName }}`.

For each ready merge request, in priority order:
1. Rebase the branch onto `origin/{{ .DefaultBranch }}`.
2. Run the rig's gates. Red means `{{ cmd }} mq reject` with the first failure, and move on.
3. Green: push, `{{ cmd }} mq post-merge`, close the source issue, mail the witness MERGED.

Never skip the gates, never force-push `{{ .DefaultBranch }}`, never merge your own fixes without a bead.
""",
    "polecat": """# Polecat Context

You are polecat {{ .Polecat }} in rig {{ .RigName }}, working in `{{ .WorkDir }}`.

> Recovery: run `{{ cmd }} prime` after compaction, `/clear` or a new session.

## The one rule
If there is work on your hook, you run it. Now. No waiting for confirmation.

```bash
{{ cmd }} hook          # what you are working on
bd show <issue>         # the details ({{ .IssuePrefix }}... ids belong to this rig)
```

## Finishing
When the work is committed and pushed, your only next action is:
```bash
{{ cmd }} done
```
Do not merge, do not close your own issue, do not wait for review. If `{{ cmd }} done` fails,
mail the witness (`{{ cmd }} mail send {{ .RigName }}/witness -s "HELP: ..." -m "..."`).

## Out of context?
`{{ cmd }} handoff -s "<where I am>" -m "<what is left>"` cycles you into a fresh session.
""",
    "crew": """# Crew Context

You are crew member {{ .Polecat }} in rig {{ .RigName }}, in your own clone at `{{ .WorkDir }}`.

Crew work is directed by a human, not by the witness. You keep your clone between sessions,
so commit or stash before you stop.

- Pick up work: `bd ready`, or whatever the overseer asks for in this session.
- Small fixes may go straight to a branch and `{{ cmd }} mq submit`; larger ones get a bead first.
- Need a polecat's help? `{{ cmd }} sling <bead> {{ .RigName }}`.
- Prefix for this rig's beads: `{{ .IssuePrefix }}`. Town root: `{{ .TownRoot }}`.
""",
}


def render_role(role: str, w: World, *, rig: str = "", name: str = "", workdir: str = "") -> str:
    """A role template with its placeholders filled in (what `gt prime` prints)."""
    prefix = w.rig(rig).prefix if rig else "hq-"
    subs = {
        "{{ .TownRoot }}": str(w.root),
        "{{ .RigName }}": rig,
        "{{ .Polecat }}": name,
        "{{ .WorkDir }}": workdir,
        "{{ .IssuePrefix }}": prefix,
        "{{ .DefaultBranch }}": "main",
        "{{ .DeaconSession }}": "hq-deacon",
        "{{ cmd }}": "gt",
    }
    text = ROLE_TEMPLATES[role]
    for k, v in subs.items():
        text = text.replace(k, v)
    return text


def town_docs(w: World) -> dict[str, str]:
    p = w.planter
    o = w.overseer
    email = p.record("email", o.email, "CLAUDE.md")
    phone = p.record("phone", o.phone, "CLAUDE.md")
    db_pw = p.f.password()
    p.record("password_env", db_pw, "CLAUDE.md", f"DB_PASSWORD={db_pw}")
    home = p.record("home_path_user", f"/home/{o.login}/gt-backups", "CLAUDE.md")
    claude = f"""# Gas Town HQ

This directory is the town root. Everything in it is shared by every agent in the town.

| path | what lives there |
|---|---|
| `mayor/` | the Mayor's home (dispatch, convoys, talking to the overseer) |
| `deacon/` | the Deacon's home (town patrol, health checks) |
| `.beads/` | town beads (`hq-` ids): convoys, mail, agent and role beads; town formulas |
| `.events.jsonl` | the raw event feed (`gt feed` reads it) |
| `logs/town.log` | one line per lifecycle event |
| `directives/` | the overseer's policy per role (`<role>.md`), added to what `gt prime` prints |
| `ledger/`, `courier/` | the rigs (not git clones): code and beads in `<rig>/mayor/rig`, the canonical
  clone; the refinery and polecats work in worktrees of it, crew in their own clones |

## Rules for every agent
1. **Hooked work runs.** If `gt hook` shows something, do it now.
2. **Beads are the record.** Decisions, blockers and hand-offs go in beads or mail, not in chat.
3. **Main belongs to the refinery.** Nobody else pushes to a rig's main.
4. **Escalate with evidence.** `gt escalate -s <LOW|MEDIUM|HIGH|CRITICAL> "what" --reason "why"`.
5. **No secrets in beads, mail or commits.** Use the rig's `.env` (never committed).

## Useful commands
```bash
gt prime                  # who am I, what is my job
gt hook                   # what am I working on
bd ready                  # unblocked work in this rig
gt mail inbox             # my mail
gt convoy list            # batches of work in flight
gt feed --since 1h        # what happened recently
```

Agents find their role in `GT_ROLE` (mayor, deacon, witness, refinery, polecat, crew) and their
identity in `BD_ACTOR` (for example `ledger/polecats/nux`).

## Local setup (overseer only)
- Overseer: {o.name} <{email}>, {phone} for anything CRITICAL out of hours.
- Dolt runs on 127.0.0.1:3307. The backup job reads `DB_PASSWORD={db_pw}` from the launchd plist.
- Nightly JSONL backups land in `{home}`.
"""
    agents = """# AGENTS.md (town)

Non-Claude agents read this file instead of CLAUDE.md. The short version:

- Run `gt prime` first. It prints your role and your hooked work.
- Your role is in `$GT_ROLE`; your beads identity in `$BD_ACTOR`.
- Work comes from your hook (`gt hook`). Finished work goes through `gt done` (polecats) or
  `gt mq submit` (crew). Nobody but the refinery merges.
- Ask for help with `gt mail send <rig>/witness -s "HELP: ..." -m "..."`, or `gt escalate`.
- Bead ids carry their database in the prefix: `hq-` is the town, `le-` is ledger,
  `co-` is courier (see `.beads/routes.jsonl`).
"""
    slack = p.new("slack_token", "mayor/CLAUDE.md")
    mayor_phone = p.record("phone", o.phone, "mayor/CLAUDE.md")
    mayor = f"""# Mayor: town conventions

You coordinate; you do not implement. Read the role context from `gt prime` first.

## Daily loop
1. `gt mail inbox`: escalations and POLECAT_DONE summaries from the witnesses.
2. `gt convoy list` and `gt convoy stranded`: anything stuck gets re-slung or escalated.
3. New goals from the overseer become beads: `bd create "..." -t feature -p 1`, epics with children
   (`bd create --parent <epic>`), then a convoy: `gt convoy create "<name>" <ids...>`.
4. Dispatch: `gt sling <bead> <rig>`. One bead per polecat.

## Priorities
P0 is an outage, P1 is this week, P2 is the default, P3/P4 can wait. Do not sling P3 work while
P1 work is unassigned.

## Overseer
{o.first} prefers one summary message per hour over many small ones. Text {mayor_phone} only for
P0s. The Slack bridge posts convoy landings with the bot token `{slack}`.
"""
    ip = p.new("public_ipv4", "deacon/CLAUDE.md")
    mirror_pw = p.f.password(url_safe=True)
    url = f"mysql://dolt_mirror:{mirror_pw}@{ip}:3306/hq"
    p.record("password_in_url", mirror_pw, "deacon/CLAUDE.md", url)
    deacon = f"""# Deacon: town conventions

Your patrol formula is `mol-deacon-patrol` (the town copy in `.beads/formulas/` is JSON).

## Health checks
- Witness and refinery sessions for every rig: `gt agents list`. Missing ones get restarted.
- Dolt: `gt dolt status`. It must listen on 127.0.0.1:3307. If `gt dolt status` says read-only,
  run `gt dolt recover` once; a second failure is `gt escalate -s HIGH`.
- The off-site mirror is `{url}` (pushed by the backup dog;
  you only check that the last push is less than a day old).

## Restarts, not nukes
Restart a dead session with `gt session restart <rig>/<name>`. Killing a polecat's sandbox is the
mayor's call. Three restarts of the same agent in an hour: escalate instead of restarting again.

## Reporting
End every cycle with `gt patrol report --summary "..."`. Quiet cycles are one line.
"""
    return {"CLAUDE.md": claude, "AGENTS.md": agents, "mayor/CLAUDE.md": mayor, "deacon/CLAUDE.md": deacon}


# ------------------------------------------------------------------------------------------------
# Rig files
# ------------------------------------------------------------------------------------------------

LEDGER_IMPORTER = '''"""Read bank CSV exports into ledger entries."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal

from ledger.money import parse_amount


@dataclass(frozen=True)
class Entry:
    date: str
    payee: str
    amount: Decimal
    currency: str


def read_csv(text: str, *, currency: str = "USD") -> list[Entry]:
    """Entries from a CSV export with a date,payee,amount header.

    The csv module handles quoted fields, so payees like "Smith, J." keep their comma.
    """
    rows = csv.DictReader(io.StringIO(text))
    out = []
    for row in rows:
        out.append(Entry(row["date"].strip(), row["payee"].strip(), parse_amount(row["amount"]),
                         row.get("currency") or currency))
    return out
'''

LEDGER_IMPORTER_V1 = '''"""Read bank CSV exports into ledger entries."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ledger.money import parse_amount


@dataclass(frozen=True)
class Entry:
    date: str
    payee: str
    amount: Decimal
    currency: str


def read_csv(text: str, *, currency: str = "USD") -> list[Entry]:
    """Entries from a CSV export with a date,payee,amount header."""
    out = []
    for line in text.splitlines()[1:]:
        date, payee, amount = line.split(",")[:3]
        out.append(Entry(date.strip(), payee.strip(), parse_amount(amount), currency))
    return out
'''

LEDGER_TEST_V1 = """from decimal import Decimal

from ledger.importer import read_csv


def test_plain_rows():
    rows = read_csv("date,payee,amount\\n2026-01-03,Grocer,12.50\\n")
    assert rows[0].amount == Decimal("12.50")
"""

LEDGER_MONEY = '''"""Money helpers: Decimal in, Decimal out, never float."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

MINOR_UNITS = {"USD": 2, "EUR": 2, "JPY": 0, "KWD": 3}


def parse_amount(raw: str) -> Decimal:
    cleaned = raw.strip().replace(",", "").replace("$", "")
    if cleaned.startswith("(") and cleaned.endswith(")"):
        cleaned = "-" + cleaned[1:-1]
    return Decimal(cleaned)


def round_minor(amount: Decimal, currency: str) -> Decimal:
    places = MINOR_UNITS.get(currency, 2)
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
'''

LEDGER_TEST = """from decimal import Decimal

from ledger.importer import read_csv
from ledger.money import round_minor


def test_quoted_payee_keeps_comma():
    rows = read_csv('date,payee,amount\\n2026-01-03,"Smith, J.",12.50\\n')
    assert rows[0].payee == "Smith, J."
    assert rows[0].amount == Decimal("12.50")


def test_parenthesised_amount_is_negative():
    rows = read_csv("date,payee,amount\\n2026-01-04,Refund,(3.20)\\n")
    assert rows[0].amount == Decimal("-3.20")


def test_round_half_even_in_minor_units():
    assert round_minor(Decimal("0.125"), "USD") == Decimal("0.12")
    assert round_minor(Decimal("10.5"), "JPY") == Decimal("10")
"""

COURIER_MAIN = """package main

import (
\t"log"
\t"os"
\t"time"

\t"courier/internal/retry"
)

func main() {
\tpolicy := retry.Policy{Base: 200 * time.Millisecond, Max: 30 * time.Second, Attempts: 8}
\taddr := os.Getenv("COURIER_LISTEN")
\tif addr == "" {
\t\taddr = "127.0.0.1:8087"
\t}
\tlog.Printf("courierd listening on %s (retry policy %+v)", addr, policy)
}
"""

COURIER_BACKOFF = """package retry

import (
\t"math/rand"
\t"time"
)

// Policy says how often and how long to retry a failed webhook delivery.
type Policy struct {
\tBase     time.Duration
\tMax      time.Duration
\tAttempts int
}

// Delay is the wait before attempt n (0-based): exponential with full jitter, capped at Max.
func (p Policy) Delay(n int, r *rand.Rand) time.Duration {
\td := p.Base << uint(n)
\tif d <= 0 || d > p.Max {
\t\td = p.Max
\t}
\treturn time.Duration(r.Int63n(int64(d) + 1))
}
"""

COURIER_BACKOFF_TEST = """package retry

import (
\t"math/rand"
\t"testing"
\t"time"
)

func TestDelayNeverExceedsMax(t *testing.T) {
\tp := Policy{Base: 100 * time.Millisecond, Max: 2 * time.Second, Attempts: 10}
\tr := rand.New(rand.NewSource(1))
\tfor n := 0; n < 40; n++ {
\t\tif d := p.Delay(n, r); d > p.Max {
\t\t\tt.Fatalf("attempt %d: delay %v over max %v", n, d, p.Max)
\t\t}
\t}
}
"""

COURIER_DLQ = """package dlq

import "sync"

// Queue holds deliveries that ran out of retries until an operator replays them.
type Queue struct {
\tmu    sync.Mutex
\titems []string
}

func (q *Queue) Push(id string) {
\tq.mu.Lock()
\tdefer q.mu.Unlock()
\tq.items = append(q.items, id)
}

// Drain hands back every queued id exactly once.
func (q *Queue) Drain() []string {
\tq.mu.Lock()
\tdefer q.mu.Unlock()
\tout := q.items
\tq.items = nil
\treturn out
}
"""


def rig_files(w: World) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """(final files, earlier versions) of each rig, keyed by rig name, then by path in the rig.

    The earlier versions are what the first commits hold before later commits rewrite them.
    """
    p = w.planter
    ledger, courier = w.rigs[0], w.rigs[1]
    L, C = ledger.name, courier.name
    gkey = p.new("google_api_key", f"{ledger.clone}/CLAUDE.md")
    fixtures = p.record(
        "home_path_user",
        f"/Users/{w.people[0].login}/src/ledger-fixtures/private",
        f"{ledger.clone}/CLAUDE.md",
    )
    ledger_claude = f"""# ledger: rig conventions

ledger turns bank CSV exports into double-entry books. Python 3.11, managed with uv.

## Gates (the refinery runs exactly these)
```bash
uv run ruff check .
uv run pytest -q
```

## Code rules
- Money is `decimal.Decimal` from parse to print. A float anywhere near an amount is a bug.
- Rounding is banker's rounding (`ROUND_HALF_EVEN`) in the currency's minor units.
- Every CSV dialect we accept has a fixture in `tests/fixtures/` and a test that reads it.

## Beads
Prefix `{ledger.prefix}`. Epics carry the design; children carry the work. File anything you
notice but should not fix now with `--deps discovered-from:<your issue>`.

## Local notes
The FX sheet export uses `GOOGLE_SHEETS_KEY={gkey}` (read-only, sandbox project).
Real customer exports are NOT fixtures; they live outside the repo in `{fixtures}`.
"""
    ledger_agents = f"""# AGENTS.md (ledger)

- Install: `uv sync`. Test: `uv run pytest -q`. Lint: `uv run ruff check .`.
- Source in `ledger/`, tests in `tests/`. Keep modules small; one concept per file.
- Work arrives on your hook; finish with `gt done`. Bead prefix: `{ledger.prefix}`.
- Formulas for this rig: `.beads/formulas/` (overrides the town's), embedded ones in
  `internal/formula/formulas/`.
"""
    ledger_readme_v1 = "# ledger\n\nCSV bank exports in, double-entry books out.\n"
    ledger_readme = """# ledger

CSV bank exports in, double-entry books out.

```bash
uv sync
uv run python -m ledger import statements/2026-01.csv --currency EUR
```

Supported dialects: plain `date,payee,amount`; quoted payees with commas; amounts in
parentheses for debits. See `tests/fixtures/` for examples.

This rig is run by Gas Town: issues are beads (`bd ready`), work is done by polecats,
and the refinery merges to main.
"""
    ledger_files = {
        "README.md": ledger_readme,
        "pyproject.toml": '[project]\nname = "ledger"\nversion = "0.4.0"\nrequires-python = ">=3.11"\n'
        "dependencies = []\n\n[tool.ruff]\nline-length = 100\n",
        "ledger/__init__.py": '"""Double-entry books from bank exports."""\n\n__version__ = "0.4.0"\n',
        "ledger/importer.py": LEDGER_IMPORTER,
        "ledger/money.py": LEDGER_MONEY,
        "tests/test_importer.py": LEDGER_TEST,
        "tests/fixtures/quoted_payees.csv": 'date,payee,amount\n2026-01-03,"Smith, J.",12.50\n'
        "2026-01-05,Grocer,(41.07)\n",
        "CLAUDE.md": ledger_claude,
        "AGENTS.md": ledger_agents,
        ".gitignore": ".env\n.venv/\n__pycache__/\n.reviews/\n",
        ".claude/commands/handoff-notes.md": """---
description: Write a hand-off note for the next session and cycle
allowed-tools: Bash(gt:*), Bash(bd:*), Bash(git status:*)
---
Summarise where the work on the hooked bead stands: what is committed, what is half done,
what you would do next. Then run:

```bash
gt handoff -s "$ARGUMENTS" -m "<your summary>"
```
""",
        ".claude/commands/check-hook.md": """---
description: Show the hooked bead and its molecule step
allowed-tools: Bash(gt hook:*), Bash(bd show:*), Bash(bd mol current:*)
---
Run `gt hook`, then `bd show` on the hooked bead and `bd mol current` on its molecule.
Report the current step in one sentence and start working on it.
""",
        ".claude/skills/csv-dialects/SKILL.md": """---
name: csv-dialects
description: Recognise a bank CSV dialect and add support for it to ledger's importer
---
# Adding a CSV dialect

1. Copy a few anonymised rows into `tests/fixtures/<bank>.csv`. Replace names and account
   numbers before they touch the repo.
2. Write a failing test in `tests/test_importer.py` that reads the fixture.
3. Extend `ledger/importer.py`. Prefer the csv module's options (delimiter, quotechar) over
   hand-written parsing.
4. Amounts go through `ledger.money.parse_amount`; never `float()`.
""",
    }
    stripe = p.new("stripe_key", f"{courier.clone}/CLAUDE.md")
    courier_claude = f"""# courier: rig conventions

courier delivers webhooks with retries and a dead-letter queue. Go 1.22, no cgo.

## Gates
```bash
go vet ./...
go test ./...
```

## Rules
- Every retry path goes through `internal/retry.Policy`; no ad-hoc sleeps.
- A delivery is in the DLQ exactly once. Tests for anything that touches `internal/dlq`
  must run with `-race`.
- Logs never include payload bodies (they carry customer data).

## Beads
Prefix `{courier.prefix}`. Incidents are P0 bugs labelled `incident`.

## Staging
The staging signer still uses the old live key `{stripe}` until ops rotates it.
Do not copy it anywhere else.
"""
    cli_pw = p.f.password()
    p.record("password_cli_flag", cli_pw, f"{courier.clone}/AGENTS.md", f"--password={cli_pw}")
    courier_agents = f"""# AGENTS.md (courier)

- Build: `go build ./...`. Test: `go test -race ./...`.
- Service entry point: `cmd/courierd`. Retry logic: `internal/retry`. DLQ: `internal/dlq`.
- Local database for integration tests:
  `go run ./cmd/courierctl migrate --db-user courier --password={cli_pw} --db 127.0.0.1:5432/courier_test`
- Work arrives on your hook; finish with `gt done`. Bead prefix: `{courier.prefix}`.
"""
    courier_files = {
        "README.md": """# courier

Webhook delivery with exponential backoff, jitter and a dead-letter queue.

```bash
go run ./cmd/courierd
```

Retry policy lives in `internal/retry`; failed deliveries end up in `internal/dlq` until an
operator replays them. Work on this repo is tracked in beads (`bd ready`).
""",
        "go.mod": "module courier\n\ngo 1.22\n",
        "cmd/courierd/main.go": COURIER_MAIN,
        "internal/retry/backoff.go": COURIER_BACKOFF,
        "internal/retry/backoff_test.go": COURIER_BACKOFF_TEST,
        "internal/dlq/queue.go": COURIER_DLQ,
        "CLAUDE.md": courier_claude,
        "AGENTS.md": courier_agents,
        ".gitignore": ".env\n/bin/\n",
        ".claude/commands/mq-status.md": """---
description: Show courier's merge queue and what is blocking it
allowed-tools: Bash(gt mq:*), Bash(gt refinery:*)
---
Run `gt mq list courier` and `gt refinery blocked courier`. For each blocked merge request,
name the bead that blocks it and who holds that bead.
""",
        ".claude/commands/run-gates.md": """---
description: Run the same gates the refinery runs
allowed-tools: Bash(go:*)
---
Run `go vet ./...` and `go test -race ./...`. Report failures with the first failing test name
and the file:line it points at. Do not try to fix anything unless asked.
""",
        ".claude/skills/webhook-replay/SKILL.md": """---
name: webhook-replay
description: Replay dead-lettered webhook deliveries safely
---
# Replaying the DLQ

1. Look before you replay: `go run ./cmd/courierctl dlq stats`.
2. Replay in small batches (`--limit 50`) and watch the error rate between batches.
3. Deliveries older than 24 hours are dropped by most receivers; list them, do not replay them.
4. Record what you replayed on the incident bead with `bd comments add <id> "..."`.
""",
        ".claude/skills/go-race/SKILL.md": """---
name: go-race
description: Chase a data race reported by go test -race
---
Read the two stacks in the race report: one write, one read or write. Find the shared variable,
then either guard it with the owning struct's mutex or stop sharing it. Re-run with
`go test -race -count 20 ./internal/...` before calling it fixed.
""",
    }
    roles = {f"internal/templates/roles/{r}.md.tmpl": t for r, t in ROLE_TEMPLATES.items()}
    ledger_files.update(roles)
    early = {
        L: {
            "README.md": ledger_readme_v1,
            "ledger/importer.py": LEDGER_IMPORTER_V1,
            "tests/test_importer.py": LEDGER_TEST_V1,
        },
        C: {"README.md": "# courier\n\nWebhook delivery.\n"},
    }
    return {L: ledger_files, C: courier_files}, early
