"""Beads of the demo town: the first rig's `bd export`, the town's `hq-` export, the second rig's
`bd backup` dump.

Beads are built once as plain dicts (`Bead`), then written in either form. JSON is written the way
Go's encoding/json writes it (`<`, `>` and `&` escaped as \\u003c, \\u003e, \\u0026).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gastown_ft.demo.canaries import HF_TOKEN as CANARY_HF_TOKEN
from gastown_ft.demo.world import World, iso


def go_json(obj: Any, *, sort_keys: bool = False) -> str:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


@dataclass
class Bead:
    id: str
    title: str
    issue_type: str
    status: str
    priority: int
    created_at: datetime
    created_by: str
    owner: str = ""
    description: str = ""
    design: str = ""
    acceptance_criteria: str = ""
    notes: str = ""
    assignee: str = ""
    updated_at: datetime | None = None
    closed_at: datetime | None = None
    close_reason: str = ""
    labels: list[str] = field(default_factory=list)
    deps: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # hook_bead, role_type, rig, ... (backup form)
    tombstone: dict[str, Any] | None = None

    def dep(self, on: str, type: str, at: datetime, by: str) -> Bead:
        self.deps.append(
            {"issue_id": self.id, "depends_on_id": on, "type": type, "created_at": iso(at), "created_by": by}
        )
        return self

    def comment(self, author: str, text: str, at: datetime) -> Bead:
        self.comments.append({"author": author, "text": text, "created_at": iso(at)})
        return self

    @property
    def last_touch(self) -> datetime:
        return self.updated_at or self.closed_at or self.created_at

    def export_row(self, comment_ids: dict[int, int]) -> dict[str, Any]:
        """`bd export` form: empty optional fields left out, arrays inline."""
        row: dict[str, Any] = {"id": self.id, "title": self.title}
        for k in ("description", "design", "acceptance_criteria", "notes"):
            if getattr(self, k):
                row[k] = getattr(self, k)
        row["status"] = self.status
        row["priority"] = self.priority
        row["issue_type"] = self.issue_type
        if self.assignee:
            row["assignee"] = self.assignee
        if self.owner:
            row["owner"] = self.owner
        row["created_at"] = iso(self.created_at)
        row["created_by"] = self.created_by
        row["updated_at"] = iso(self.last_touch)
        if self.closed_at:
            row["closed_at"] = iso(self.closed_at)
        if self.close_reason:
            row["close_reason"] = self.close_reason
        if self.tombstone:
            row.update(self.tombstone)
        if self.labels:
            row["labels"] = list(self.labels)
        if self.deps:
            row["dependencies"] = [dict(d) for d in self.deps]
        if self.comments:
            row["comments"] = [{"id": comment_ids[id(c)], "issue_id": self.id, **c} for c in self.comments]
        row["dependency_count"] = len(self.deps)
        row["comment_count"] = len(self.comments)
        return row


def _agent_bead(bid: str, rig: str, role: str, name: str, at: datetime, hook: str, state: str) -> Bead:
    who = f"{role.capitalize()} {name} in {rig}" if name else f"{role.capitalize()} for {rig}"
    desc = (
        f"{who}.\n\nrole_type: {role}\nrig: {rig}\nagent_state: {state}\n"
        f"hook_bead: {hook or 'null'}\ncleanup_status: null\nactive_mr: null"
    )
    return Bead(
        bid,
        who,
        "agent",
        "open",
        2,
        at,
        "deacon",
        description=desc,
        extra={"role_type": role, "rig": rig, "agent_state": state, "hook_bead": hook},
    )


# ------------------------------------------------------------------------------------------------
# First rig: bd export
# ------------------------------------------------------------------------------------------------


def ledger_beads(w: World, fix_sha: str) -> list[Bead]:
    rng = w.rng("beads-ledger")
    rig = w.rigs[0]
    path = f"{rig.clone}/.beads/issues.jsonl"
    p, ids = w.planter, w.ids
    o, helper = w.overseer, w.people[1]
    owner = p.record("email", o.email, path)
    owner2 = p.record("email", helper.email, path)
    day = w.day
    L = rig.name
    nux, slit, max_ = f"{L}/polecats/nux", f"{L}/polecats/slit", f"{L}/crew/max"

    def ago(days: float) -> datetime:
        return day - timedelta(days=days, minutes=rng.randrange(0, 600))

    def nid() -> str:
        return w.new_bead_id(rig.prefix, rng)

    beads: list[Bead] = []
    epic = Bead(
        ids["le_epic"],
        "Multi-currency statement import",
        "epic",
        "in_progress",
        1,
        ago(12),
        "mayor",
        owner=owner,
        description="Import statements in EUR, JPY and KWD as well as USD, keeping amounts exact "
        "and rounding only at presentation.",
        design="1. Table of minor units per currency (money.MINOR_UNITS).\n"
        "2. Importer reads a currency column when present, else the --currency flag.\n"
        "3. Fixtures for each bank dialect we have seen.\n"
        "Out of scope: FX conversion (separate epic).",
        acceptance_criteria="All fixtures import; round-trip of every fixture is exact; "
        "no float anywhere in ledger/.",
        labels=["multi-currency", "importer"],
    )
    beads.append(epic)
    c1 = Bead(
        epic.id + ".1",
        "Per-currency minor units table",
        "task",
        "closed",
        2,
        ago(11),
        "mayor",
        owner=owner,
        assignee=f"{L}/polecats/{rig.polecats[2]}",
        description="Add MINOR_UNITS and round_minor() with banker's rounding.",
        closed_at=ago(8),
        close_reason="Merged in refinery run; tests cover JPY and KWD.",
    )
    c1.dep(epic.id, "parent-child", c1.created_at, "mayor")
    c2 = Bead(
        ids["le_csv"],
        "Handle quoted commas in payee field",
        "bug",
        "closed",
        1,
        ago(3),
        "mayor",
        owner=owner,
        assignee=nux,
        description='Payees like "Smith, J." are split into two columns and the amount is read '
        "from the wrong field, so the import fails with InvalidOperation.\n\n"
        "Repro: `uv run python -m ledger import tests/fixtures/quoted_payees.csv`",
        acceptance_criteria="Quoted payees keep their comma; fixture and test added.",
        notes="Fix uses csv.DictReader instead of str.split.",
        updated_at=w.at("09:52"),
        closed_at=w.at("09:49"),
        close_reason=f"Merged in {fix_sha[:8]}",
        labels=["importer", "bug"],
    )
    c2.dep(epic.id, "parent-child", c2.created_at, "mayor")
    c2.comment("mayor", "Slung to nux; part of the reliability convoy.", w.at("09:02"))
    c2.comment(
        nux, f"Pushed polecat/nux/{c2.id}; tests green after rebase. Submitting via gt done.", w.at("09:40")
    )
    c3 = Bead(
        epic.id + ".3",
        "EUR statement fixture from the second bank",
        "task",
        "open",
        2,
        ago(3),
        "mayor",
        owner=owner,
        description="Semicolon-delimited, comma as decimal separator. Needs the quoted-comma fix first.",
    )
    c3.dep(epic.id, "parent-child", c3.created_at, "mayor").dep(c2.id, "blocks", c3.created_at, "mayor")
    beads += [c1, c2, c3]

    rounding = Bead(
        ids["le_round"],
        "Rounding drifts by one cent on split transactions",
        "bug",
        "hooked",
        1,
        ago(2),
        f"{L}/witness",
        owner=owner,
        assignee=slit,
        description="Splitting 100.00 three ways gives 33.33 + 33.33 + 33.33 and drops a cent. "
        "The remainder should go to the first split.",
        acceptance_criteria="Splits always sum to the original amount.",
        updated_at=w.at("09:03"),
        labels=["money"],
    )
    rounding.dep(epic.id, "related", rounding.created_at, "mayor")
    rounding.comment(
        f"{L}/witness", "slit went quiet at 09:25; nudged. Session log ends mid-write.", w.at("09:58")
    )
    beads.append(rounding)

    mr = Bead(
        ids["le_mr"],
        f"Merge: polecat/nux/{c2.id}",
        "merge-request",
        "closed",
        1,
        w.at("09:41"),
        nux,
        description=f"branch: polecat/nux/{c2.id}\ntarget: main\nsource_issue: {c2.id}\n"
        f"worker: {nux}\npre_verified: true\ncommit_sha: {fix_sha}",
        closed_at=w.at("09:49"),
        close_reason=f"Merged as {fix_sha[:8]}",
        labels=["gt:merge-request"],
    )
    mr.dep(c2.id, "related", mr.created_at, nux)
    beads.append(mr)

    docs = Bead(
        ids["le_docs"],
        "README: document the parenthesised-debit dialect",
        "chore",
        "closed",
        3,
        ago(1),
        max_,
        owner=owner2,
        assignee=max_,
        closed_at=w.at("16:20"),
        close_reason="Done in crew branch, merged by refinery.",
    )
    beads.append(docs)

    # Backlog with planted secrets and personal data.
    pg_pw = p.f.password(url_safe=True)
    pg_host = f"db.{w.overseer.email.split('@')[1]}"
    url = f"postgres://ledger_rw:{pg_pw}@{pg_host}:5432/ledger"
    p.record("password_in_url", pg_pw, path, url)
    recon = Bead(
        nid(),
        "Nightly reconcile job cannot reach the database",
        "bug",
        "closed",
        1,
        ago(9),
        owner2,
        owner=owner2,
        assignee=max_,
        description="The cron job logs `could not connect to server`. It is configured with\n"
        f"DATABASE_URL={url}\nand works from a laptop, so suspect the "
        "allow-list on the database side.",
        closed_at=ago(8),
        close_reason="Allow-list updated; job green two nights running.",
        labels=["ops"],
    )
    recon.comment(max_, "Confirmed: the runner's egress address changed. Added it to the allow-list.", ago(8))
    beads.append(recon)

    ghp = p.new("github_token", path)
    fixtures = Bead(
        nid(),
        "CI cannot clone the private fixtures repo",
        "task",
        "closed",
        2,
        ago(7),
        max_,
        owner=owner2,
        assignee=max_,
        description="tests/fixtures/private is a submodule pointing at a private repo; CI has "
        "no credentials for it.",
        closed_at=ago(6),
        close_reason="Switched to a deploy key scoped to the fixtures repo.",
    )
    fixtures.comment(
        max_,
        f"Unblocked CI for now with GITHUB_TOKEN={ghp} in the runner env; needs a proper deploy key.",
        ago(7),
    )
    fixtures.comment(owner2, "Please never paste tokens into beads. Rotating that one now.", ago(7))
    canary = p.record("canary", CANARY_HF_TOKEN, path)  # fixed: the evaluation watches for it
    fixtures.comment(max_, f"The fixtures download also needs HF_TOKEN={canary}; set it in CI too.", ago(7))
    beads.append(fixtures)

    jwt = p.new("jwt", path, subject="svc-ledger-import")
    bankapi = Bead(
        nid(),
        "Bank API returns 401 for statement download",
        "bug",
        "open",
        2,
        ago(5),
        owner,
        owner=owner,
        description="Download fails since Monday. Request we send:\n\n"
        "GET /v2/statements?month=2026-01\n"
        f"Authorization: Bearer {jwt}\n\n"
        "The token decodes fine and is not expired, so maybe the scope changed.",
        labels=["bank-api"],
    )
    support_phone = p.record("phone", p.f.intl_phone(), path)
    bankapi.comment(
        owner,
        f"Bank support says scopes were renamed. Their desk: {support_phone} (ask for the API team).",
        ago(4),
    )
    beads.append(bankapi)

    ssh = p.new("openssh_private_key", path)
    leak = Bead(
        nid(),
        "Deploy key was committed to scripts/ by mistake",
        "bug",
        "closed",
        0,
        ago(6),
        max_,
        owner=owner2,
        assignee=max_,
        description="scripts/deploy_key was added in a crew commit and pushed. Contents, so the "
        f"rotation can be verified against it:\n\n{ssh}\n\nRemove from history and "
        "rotate on the server.",
        closed_at=ago(6),
        close_reason="Key rotated, file purged with git filter-repo.",
        labels=["security", "incident"],
    )
    beads.append(leak)

    float_task = Bead(
        nid(),
        "Replace float in the legacy monthly report script",
        "task",
        "open",
        2,
        ago(10),
        "mayor",
        owner=owner,
        description="scripts/monthly_report.py sums amounts as floats. Port it to Decimal "
        "and ledger.money.round_minor().",
    )
    float_task.dep(epic.id, "related", float_task.created_at, "mayor")
    negzero = Bead(
        nid(),
        "Negative zero printed as -0.00",
        "bug",
        "open",
        3,
        ago(4),
        f"{L}/polecats/nux",
        owner=owner,
        description="A debit and a credit of the same amount print a balance of -0.00.",
    )
    negzero.dep(c2.id, "discovered-from", negzero.created_at, nux)
    ofx = Bead(
        nid(),
        "OFX import",
        "feature",
        "deferred",
        3,
        ago(15),
        owner,
        owner=owner,
        description="Some banks only offer OFX. Park until the CSV path is solid.",
        labels=["importer", "someday"],
    )
    bom = Bead(
        nid(),
        "Importer crashes on BOM-prefixed files",
        "bug",
        "closed",
        2,
        ago(13),
        max_,
        owner=owner2,
        assignee=f"{L}/polecats/{rig.polecats[2]}",
        description="Exports from one bank start with a UTF-8 BOM; the header becomes '\\ufeffdate'.",
        closed_at=ago(12),
        close_reason="Read files with encoding='utf-8-sig'.",
    )
    ruff = Bead(
        nid(),
        "Bump ruff and fix new lint findings",
        "chore",
        "closed",
        4,
        ago(14),
        max_,
        owner=owner2,
        closed_at=ago(14),
        close_reason="Done.",
    )
    policy = Bead(
        nid(),
        "Document the rounding policy",
        "task",
        "blocked",
        3,
        ago(6),
        "mayor",
        owner=owner,
        description="Write down where rounding happens and why it is banker's rounding.",
    )
    policy.dep(rounding.id, "blocks", policy.created_at, "mayor")
    beads += [float_task, negzero, ofx, bom, ruff, policy]

    agent_nux = _agent_bead(f"{rig.prefix}{L}-polecat-nux", L, "polecat", "nux", ago(20), "", "idle")
    agent_slit = _agent_bead(
        f"{rig.prefix}{L}-polecat-slit", L, "polecat", "slit", ago(20), rounding.id, "working"
    )
    agent_witness = _agent_bead(
        f"{rig.prefix}{L}-witness", L, "witness", "", ago(20), ids["le_patrol_wisp"], "working"
    )
    agent_witness.status = "pinned"
    beads += [agent_nux, agent_slit, agent_witness]

    # Deleted beads (old exports keep them as tombstones).
    for title, reason, orig in [
        ("--help", "Garbage bead from a flag-parsing slip", "task"),
        ("Handle quoted commas in payee field", f"Duplicate of {c2.id}", "bug"),
        ("test bead please ignore", "Created while testing bd create", "chore"),
    ]:
        created = ago(rng.randrange(5, 18))
        deleted = created + timedelta(hours=rng.randrange(1, 30))
        t = Bead(
            nid(),
            title,
            orig,
            "tombstone",
            4,
            created,
            rng.choice(["mayor", max_, nux]),
            owner=owner,
            updated_at=deleted,
            tombstone={
                "deleted_at": iso(deleted),
                "deleted_by": "mayor",
                "delete_reason": reason,
                "original_type": orig,
            },
        )
        beads.append(t)
    return beads


def write_export(beads: list[Bead], *, bad_line_after: int | None = None) -> str:
    """`bd export` JSONL (sorted by id, as bd writes it); optionally with a JSON-array line inserted."""
    ordered = sorted(beads, key=lambda b: b.id)
    comment_ids: dict[int, int] = {}
    n = 0
    for b in ordered:
        for c in b.comments:
            n += 1
            comment_ids[id(c)] = n
    lines = [go_json(b.export_row(comment_ids)) for b in ordered]
    if bad_line_after is not None:
        lines.insert(
            min(bad_line_after, len(lines)),
            go_json([ordered[0].id, "orphaned row from an interrupted export", 2]),
        )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# Town beads (hq-)
# ------------------------------------------------------------------------------------------------


def town_beads(w: World) -> list[Bead]:
    rng = w.rng("beads-town")
    path = ".beads/issues.jsonl"
    p, ids = w.planter, w.ids
    owner = p.record("email", w.overseer.email, path)
    L, C = w.rigs[0].name, w.rigs[1].name

    def ago(days: float) -> datetime:
        return w.day - timedelta(days=days, minutes=rng.randrange(0, 600))

    beads: list[Bead] = []
    convoy = Bead(
        ids["hq_convoy"],
        "Reliability push: importer and delivery fixes",
        "convoy",
        "open",
        1,
        w.at("08:58"),
        "mayor",
        owner=owner,
        description="Tracks the three fixes the overseer asked for this morning.\n\n"
        f"tracks: {ids['le_csv']}, {ids['le_round']}, {ids['co_backoff']}",
        labels=["convoy"],
    )
    for t in (ids["le_csv"], ids["le_round"], ids["co_backoff"]):
        convoy.dep(t, "tracks", convoy.created_at, "mayor")
    beads.append(convoy)

    esc = Bead(
        ids["hq_escalation"],
        f"HIGH: {C}/polecats/furiosa cannot push its branch",
        "task",
        "open",
        1,
        w.at("09:31"),
        f"{C}/polecats/furiosa",
        owner=owner,
        assignee="mayor",
        description=f"Working {ids['co_backoff']}. `git push -u origin HEAD` fails with "
        "`Permission denied (publickey)`; tests also fail on the jitter bound.\n"
        "Tried: re-running ssh-agent, `gt doctor`. Session was interrupted after that.",
        labels=["escalation", "severity:high", f"rig:{C}"],
    )
    esc.dep(ids["co_backoff"], "related", esc.created_at, f"{C}/polecats/furiosa")
    esc.comment(
        "deacon",
        "Acknowledged. Deploy key on the courier remote was rotated yesterday; "
        "asking the overseer to re-add it.",
        w.at("10:34"),
    )
    beads.append(esc)

    done = Bead(
        ids["hq_mail_done"],
        "POLECAT_DONE nux",
        "message",
        "closed",
        2,
        w.at("09:41"),
        f"{L}/polecats/nux",
        assignee=f"{L}/witness",
        description=f"Exit: COMPLETED\nIssue: {ids['le_csv']}\nMR: {ids['le_mr']}\n"
        f"Branch: polecat/nux/{ids['le_csv']}",
        closed_at=w.at("09:44"),
        close_reason="archived",
        labels=[f"from:{L}/polecats/nux", "gt:message"],
        extra={"sender": f"{L}/polecats/nux"},
    )
    beads.append(done)

    gho = p.new("github_oauth_token", path)
    handoff = Bead(
        w.new_bead_id("hq-", rng),
        "HANDOFF: mayor session cycle",
        "message",
        "closed",
        2,
        ago(1),
        "mayor",
        assignee="mayor",
        description="Convoy for the importer work is drafted, not created yet. The overseer wants "
        "it first thing tomorrow.\n\n`gh` kept asking for auth; the token it finally "
        f"took was {gho}, in case the next session needs it.",
        closed_at=ago(0.9),
        close_reason="read",
        labels=["from:mayor", "gt:message"],
        extra={"sender": "mayor"},
    )
    beads.append(handoff)

    rotate = Bead(
        w.new_bead_id("hq-", rng),
        "Rotate the Dolt mirror credentials",
        "task",
        "open",
        2,
        ago(4),
        "deacon",
        owner=owner,
        description="The mirror password is written in deacon/CLAUDE.md. Move it to the keychain and rotate.",
    )
    digest = Bead(
        w.new_bead_id("hq-", rng),
        "Weekly town digest",
        "message",
        "closed",
        3,
        ago(3),
        "deacon",
        description=f"Merged: 9 ({L} 6, {C} 3). Escalations: 1. Zombie restarts: 2.",
        closed_at=ago(2),
        close_reason="read",
        labels=["from:deacon", "digest"],
    )
    beads += [rotate, digest]

    beads.append(
        Bead(
            "hq-mayor",
            "Mayor",
            "agent",
            "pinned",
            1,
            ago(30),
            "gt install",
            description="role_type: mayor\nagent_state: working\nhook_bead: null",
        )
    )
    beads.append(
        Bead(
            "hq-deacon",
            "Deacon",
            "agent",
            "pinned",
            1,
            ago(30),
            "gt install",
            description="role_type: deacon\nagent_state: working\nhook_bead: null",
        )
    )
    for role, text in [
        ("polecat", "Ephemeral worker: one hooked bead, ends with gt done."),
        ("witness", "Per-rig watcher of polecats: nudge, restart, escalate."),
        ("refinery", "Per-rig merge queue processor; sole writer of main."),
    ]:
        beads.append(
            Bead(
                f"hq-{role}-role",
                f"Role: {role}",
                "role",
                "pinned",
                2,
                ago(30),
                "gt install",
                description=text,
            )
        )
    return beads


# ------------------------------------------------------------------------------------------------
# Second rig: bd backup (flat SQL-column rows plus side tables)
# ------------------------------------------------------------------------------------------------

BACKUP_COLUMNS: dict[str, Any] = {
    "acceptance_criteria": "",
    "actor": "",
    "agent_state": "",
    "assignee": None,
    "await_id": "",
    "await_type": "",
    "close_reason": "",
    "closed_at": None,
    "closed_by_session": "",
    "compacted_at": None,
    "compaction_level": 0,
    "content_hash": "",
    "created_at": "",
    "created_by": "",
    "defer_until": None,
    "description": "",
    "design": "",
    "due_at": None,
    "ephemeral": 0,
    "estimated_minutes": None,
    "external_ref": None,
    "hook_bead": "",
    "id": "",
    "is_template": 0,
    "issue_type": "task",
    "last_activity": None,
    "metadata": "{}",
    "mol_type": "",
    "notes": "",
    "owner": "",
    "pinned": 0,
    "priority": 2,
    "rig": "",
    "role_bead": "",
    "role_type": "",
    "sender": "",
    "source_repo": "",
    "spec_id": "",
    "status": "open",
    "target": "",
    "timeout_ns": 0,
    "title": "",
    "updated_at": "",
    "waiters": "",
    "wisp_type": "",
    "work_type": "",
}


def courier_beads(w: World, merge_sha: str) -> list[Bead]:
    rng = w.rng("beads-courier")
    rig = w.rigs[1]
    C = rig.name
    base = f"{rig.clone}/.beads/backup"
    p, ids = w.planter, w.ids
    owner = p.record("email", w.overseer.email, f"{base}/issues.jsonl")
    owner3 = p.record("email", w.people[2].email, f"{base}/issues.jsonl")
    jack, fur, ric = f"{C}/crew/jack", f"{C}/polecats/furiosa", f"{C}/polecats/rictus"

    def ago(days: float) -> datetime:
        return w.day - timedelta(days=days, minutes=rng.randrange(0, 600))

    def nid() -> str:
        return w.new_bead_id(rig.prefix, rng)

    beads: list[Bead] = []
    backoff = Bead(
        ids["co_backoff"],
        "Retry backoff ignores jitter after attempt 6",
        "bug",
        "blocked",
        1,
        ago(2),
        jack,
        owner=owner,
        assignee=fur,
        description="Base<<n overflows the cap check from attempt 6, so every retry waits exactly "
        "Max and clients retry in lock-step.",
        acceptance_criteria="Delay(n) is uniformly random in [0, min(Base<<n, Max)] for all n.",
        updated_at=w.at("09:31"),
        labels=["retry"],
        extra={"hook_bead": "", "agent_state": ""},
    )
    backoff.comment(fur, "Blocked: cannot push (publickey). Escalated to the mayor.", w.at("09:30"))
    dlq = Bead(
        ids["co_dlq"],
        "Dead-letter queue drains the same delivery twice",
        "bug",
        "closed",
        0,
        ago(1),
        jack,
        owner=owner,
        assignee=ric,
        description="Two concurrent Drain() calls can both copy the slice before either clears it.",
        closed_at=w.at("10:24"),
        close_reason=f"Merged in {merge_sha[:8]}",
        labels=["dlq", "incident"],
    )
    mr = Bead(
        ids["co_mr"],
        f"Merge: polecat/rictus/{dlq.id}",
        "merge-request",
        "closed",
        0,
        w.at("10:05"),
        ric,
        description=f"branch: polecat/rictus/{dlq.id}\ntarget: main\nsource_issue: {dlq.id}\n"
        f"worker: {ric}\ncommit_sha: {merge_sha}",
        closed_at=w.at("10:24"),
        close_reason=f"Merged as {merge_sha[:8]}",
        labels=["gt:merge-request"],
    )
    mr.dep(dlq.id, "related", mr.created_at, ric)
    beads += [backoff, dlq, mr]

    ant = p.new("anthropic_key", f"{base}/issues.jsonl")
    summariser = Bead(
        nid(),
        "Delivery-failure summariser gets 401 from the model API",
        "bug",
        "open",
        2,
        ago(3),
        owner3,
        owner=owner3,
        description="The nightly summary of failed deliveries stopped. Log line:\n"
        "`401 invalid x-api-key` for key "
        f"{ant}\nProbably revoked in the console last week.",
    )
    ip = p.new("public_ipv4", f"{base}/issues.jsonl")
    incident = Bead(
        nid(),
        "Deliveries to the EU receiver stalled for 40 minutes",
        "bug",
        "closed",
        0,
        ago(6),
        jack,
        owner=owner,
        assignee=jack,
        description=f"Receiver at {ip} stopped answering TLS handshakes; retries piled up and "
        "the DLQ grew to 3k.",
        closed_at=ago(5),
        close_reason="Receiver fixed on their side; DLQ replayed.",
        labels=["incident"],
    )
    incident.comment(jack, "Replayed 2,914 of 3,020; the rest were older than 24h.", ago(5))
    hf = p.new("hf_token", f"{base}/comments.jsonl")
    p.record("email", owner3, f"{base}/comments.jsonl")
    p.record("email", owner3, f"{base}/events.jsonl")
    spam = Bead(
        nid(),
        "Classify webhook payloads as spam before delivery",
        "feature",
        "open",
        3,
        ago(8),
        owner3,
        owner=owner3,
        description="Small text classifier in front of the delivery queue.",
        labels=["ml", "someday"],
    )
    spam.comment(
        owner3,
        f"Model download works with HF_TOKEN={hf}; we should use a read-only org token instead.",
        ago(7),
    )
    rate = Bead(
        nid(),
        "Per-endpoint rate limits",
        "feature",
        "open",
        2,
        ago(9),
        "mayor",
        owner=owner,
        description="Receivers ask us to stay under N requests per second; make it configurable.",
    )
    rate.dep(backoff.id, "blocks", rate.created_at, "mayor")
    race = Bead(
        nid(),
        "Run go test with -race in CI",
        "task",
        "closed",
        2,
        ago(12),
        jack,
        owner=owner,
        closed_at=ago(11),
        close_reason="Added to the gate list in CLAUDE.md and CI.",
    )
    dlq.dep(race.id, "discovered-from", dlq.created_at, jack)
    agent = _agent_bead(f"{rig.prefix}{C}-polecat-rictus", C, "polecat", "rictus", ago(20), "", "idle")
    furi = _agent_bead(
        f"{rig.prefix}{C}-polecat-furiosa", C, "polecat", "furiosa", ago(20), backoff.id, "stuck"
    )
    beads += [summariser, incident, spam, rate, race, agent, furi]
    return beads


def _content_hash(b: Bead) -> str:
    h = hashlib.sha256()
    for part in (
        b.title,
        b.description,
        b.design,
        b.acceptance_criteria,
        b.notes,
        b.status,
        str(b.priority),
        b.issue_type,
        b.assignee,
    ):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def write_backup(w: World, beads: list[Bead]) -> dict[str, str]:
    """The `bd backup` files, keyed by file name."""
    rng = w.rng("backup")
    rows, deps, labels, comments, events = [], [], [], [], []
    ordered = sorted(beads, key=lambda b: b.id)
    for b in ordered:
        row = dict(BACKUP_COLUMNS)
        row.update(
            {
                "id": b.id,
                "title": b.title,
                "description": b.description,
                "design": b.design,
                "acceptance_criteria": b.acceptance_criteria,
                "notes": b.notes,
                "status": b.status,
                "priority": b.priority,
                "issue_type": b.issue_type,
                "assignee": b.assignee or None,
                "owner": b.owner,
                "created_by": b.created_by,
                "created_at": iso(b.created_at),
                "updated_at": iso(b.last_touch),
                "closed_at": iso(b.closed_at) if b.closed_at else None,
                "close_reason": b.close_reason,
                "content_hash": _content_hash(b),
                "pinned": 1 if b.status == "pinned" else 0,
            }
        )
        row.update(b.extra)
        if b.issue_type == "agent":
            row["ephemeral"] = 1
        rows.append(row)
        deps += [dict(d) for d in b.deps]
        labels += [{"issue_id": b.id, "label": lab} for lab in b.labels]
        for c in b.comments:
            comments.append({"id": 0, "issue_id": b.id, **c})
        # Audit trail.
        actor = b.created_by
        events.append(
            (
                b.created_at,
                {
                    "actor": actor,
                    "comment": None,
                    "event_type": "created",
                    "issue_id": b.id,
                    "new_value": "",
                    "old_value": "",
                },
            )
        )
        for lab in b.labels:
            events.append(
                (
                    b.created_at + timedelta(seconds=1),
                    {
                        "actor": actor,
                        "comment": f"Added label: {lab}",
                        "event_type": "label_added",
                        "issue_id": b.id,
                        "new_value": None,
                        "old_value": None,
                    },
                )
            )
        if b.assignee:
            t = b.created_at + timedelta(minutes=rng.randrange(2, 90))
            events.append(
                (
                    t,
                    {
                        "actor": "mayor",
                        "comment": None,
                        "event_type": "status_changed",
                        "issue_id": b.id,
                        "new_value": go_json({"assignee": b.assignee, "status": "hooked"}),
                        "old_value": go_json(
                            {
                                "id": b.id,
                                "title": b.title,
                                "status": "open",
                                "priority": b.priority,
                                "issue_type": b.issue_type,
                            }
                        ),
                    },
                )
            )
        if b.closed_at:
            events.append(
                (
                    b.closed_at,
                    {
                        "actor": b.assignee or actor,
                        "comment": None,
                        "event_type": "closed",
                        "issue_id": b.id,
                        "new_value": b.close_reason,
                        "old_value": "",
                    },
                )
            )
    # A description edited to remove a pasted token: the old value survives in the audit trail.
    pat = w.planter.new("github_fine_grained_token", f"{w.rigs[1].clone}/.beads/backup/events.jsonl")
    target = next(b for b in ordered if b.id == w.ids["co_backoff"])
    events.append(
        (
            target.created_at + timedelta(minutes=7),
            {
                "actor": target.created_by,
                "comment": None,
                "event_type": "updated",
                "issue_id": target.id,
                "new_value": go_json({"description": target.description}),
                "old_value": go_json(
                    {"description": target.description + f"\n\nCI token for the e2e job: {pat}"}
                ),
            },
        )
    )
    events.sort(key=lambda e: (e[0], e[1]["issue_id"], e[1]["event_type"]))
    first_event = 4000 + rng.randrange(500)
    event_rows = [{**e, "created_at": iso(t), "id": first_event + i} for i, (t, e) in enumerate(events)]
    comments.sort(key=lambda c: c["created_at"])
    for i, c in enumerate(comments, start=1):
        c["id"] = i
    config = [
        {"key": "compact_model", "value": "claude-haiku-4-5-20251001"},
        {"key": "compaction_enabled", "value": "false"},
        {"key": "issue_prefix", "value": w.rigs[1].prefix.rstrip("-")},
        {
            "key": "kv.memory.retry-policy",
            "value": "All retries go through internal/retry.Policy; Delay uses full jitter capped at Max.",
        },
        {"key": "schema_version", "value": "6"},
        {"key": "types.custom", "value": "molecule,gate,convoy,merge-request,slot,agent,role,rig,message"},
    ]
    state = {
        "last_dolt_commit": "".join(rng.choice("0123456789abcdefghijklmnopqrstuv") for _ in range(32)),
        "last_event_id": event_rows[-1]["id"],
        "timestamp": (
            w.at("18:01", rng.randrange(60)).strftime("%Y-%m-%dT%H:%M:%S.") + f"{rng.randrange(10**6):06d}Z"
        ),
        "counts": {
            "issues": len(rows),
            "events": len(event_rows),
            "comments": len(comments),
            "dependencies": len(deps),
            "labels": len(labels),
            "config": len(config),
        },
    }

    def jl(items: list[dict]) -> str:
        return "".join(go_json(x, sort_keys=True) + "\n" for x in items)

    return {
        "issues.jsonl": jl(rows),
        "dependencies.jsonl": jl(sorted(deps, key=lambda d: (d["issue_id"], d["depends_on_id"]))),
        "labels.jsonl": jl(sorted(labels, key=lambda d: (d["issue_id"], d["label"]))),
        "comments.jsonl": jl(comments),
        "events.jsonl": jl(event_rows),
        "config.jsonl": jl(config),
        "backup_state.json": json.dumps(state, indent=2) + "\n",
    }
