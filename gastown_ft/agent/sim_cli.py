"""`gt` and `bd` inside the simulated town (`simtown.SimTown`): one handler per command path.

Each handler gets the town and the invocation read against the grammar (`command_args.ParsedCommand`)
and returns (output, exit code), changing the town's state the way the real command would. Output
follows the real CLIs where the samples show it (bd's icons and `✓ Closed <id>: <reason>`, bd JSON
field names from `bd export`) and the demo town's transcripts otherwise (`gt hook`, `gt sling`,
`gt done`, `gt mail inbox`), which is also what a tuned model has seen.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from gastown_ft.agent.command_args import ParsedCommand, parse_invocation
from gastown_ft.agent.simtown import (
    STATUS_ICONS,
    VALID_STATUSES,
    Bead,
    Mail,
    Molecule,
    Polecat,
    SimTown,
)

Result = tuple[str, int]
Handler = Callable[[SimTown, ParsedCommand], Result]


def run_cli(town: SimTown, cli: str, args: list[str], text: str) -> Result:
    parsed = parse_invocation(cli, args)
    if not parsed.valid:
        town.invalid.append(text)
        return f"Error: {parsed.errors[0]}\nRun '{parsed.path} --help' for usage.", 1
    if parsed.has("help"):
        return f"Usage: {parsed.path} ...", 0
    handler = HANDLERS.get(parsed.path)
    if handler is None:
        town.unsimulated.append(text)
        return f"(simulated town: `{parsed.path}` is valid but not modelled here; nothing changed)", 0
    return handler(town, parsed)


def _pri(value: str | None, default: int = 2) -> int | None:
    if value is None:
        return default
    v = value.strip().upper().removeprefix("P")
    return int(v) if v.isdigit() and 0 <= int(v) <= 4 else None


def _line(b: Bead) -> str:
    return f"{STATUS_ICONS.get(b.status, '○')} {b.id} [● P{b.priority}] [{b.issue_type}] - {b.title}"


def _missing(bead_id: str) -> Result:
    return f"Error: no issue found matching {bead_id!r}", 1


# -- bd ----------------------------------------------------------------------------------------------


def bd_show(town: SimTown, p: ParsedCommand) -> Result:
    ids = p.positionals + p.values("id")
    if not ids:
        return "Error: requires at least one issue id", 1
    beads = []
    for i in ids:
        if i not in town.beads:
            return _missing(i)
        beads.append(town.beads[i])
    if p.has("json"):
        return json.dumps([b.as_json() for b in beads], indent=2), 0
    if p.has("short"):
        return "\n".join(f"{b.id}  [P{b.priority} {b.issue_type}  {b.status}]  {b.title}" for b in beads), 0
    out = []
    for b in beads:
        lines = [
            f"{b.id}  {b.title}",
            f"Status: {b.status}  Priority: P{b.priority}  Type: {b.issue_type}",
        ]
        if b.assignee:
            lines.append(f"Assignee: {b.assignee}")
        if b.parent:
            lines.append(f"Parent: {b.parent}")
        if b.labels:
            lines.append("Labels: " + ", ".join(b.labels))
        if b.close_reason:
            lines.append(f"Close reason: {b.close_reason}")
        if b.deps:
            lines.append("Depends on: " + ", ".join(f"{o} ({t})" for o, t in b.deps))
        if b.description:
            lines += ["", b.description]
        if b.notes:
            lines += ["", "Notes:", b.notes]
        out.append("\n".join(lines))
    return "\n\n".join(out), 0


def _matches(b: Bead, p: ParsedCommand) -> bool:
    statuses = p.values("status")
    if statuses and b.status not in statuses:
        return False
    if not statuses and not p.has("all") and b.status == "closed":
        return False
    if p.flag("assignee") and b.assignee != p.flag("assignee"):
        return False
    types = p.values("type")
    if types and b.issue_type not in types:
        return False
    labels = p.values("label")
    if labels and not set(labels) <= set(b.labels):
        return False
    if p.flag("priority") is not None and _pri(p.flag("priority")) != b.priority:
        return False
    return True


def bd_list(town: SimTown, p: ParsedCommand) -> Result:
    beads = sorted((b for b in town.beads.values() if _matches(b, p)), key=lambda b: (b.priority, b.id))
    limit = p.flag("limit")
    if limit and limit.isdigit():
        beads = beads[: int(limit)]
    if p.has("json"):
        return json.dumps([b.as_json() for b in beads], indent=2), 0
    if not beads:
        return "No issues found.", 0
    return "\n".join(_line(b) for b in beads) + f"\n\nShowing {len(beads)} issues", 0


def _ready(town: SimTown) -> list[Bead]:
    def blocked(b: Bead) -> bool:
        return any(
            t == "blocks" and town.beads.get(o) is not None and town.beads[o].status != "closed"
            for o, t in b.deps
        )

    return sorted(
        (b for b in town.beads.values() if b.status == "open" and not blocked(b)),
        key=lambda b: (b.priority, b.id),
    )


def bd_ready(town: SimTown, p: ParsedCommand) -> Result:
    beads = [b for b in _ready(town) if not p.flag("assignee") or b.assignee == p.flag("assignee")]
    if p.has("json"):
        return json.dumps([b.as_json() for b in beads], indent=2), 0
    if not beads:
        return "✨ No open issues with no blockers", 0
    lines = [f"📋 Ready work ({len(beads)} issues with no blockers):", ""]
    lines += [f"{i}. [● P{b.priority}] [{b.issue_type}] {b.id}: {b.title}" for i, b in enumerate(beads, 1)]
    return "\n".join(lines), 0


CREATE_TYPES = ("bug", "feature", "task", "epic", "chore", "decision")


def bd_create(town: SimTown, p: ParsedCommand) -> Result:
    title = p.flag("title") or (p.positionals[0] if p.positionals else None)
    if not title:
        return 'Error: title required (bd create "title" or --title)', 1
    kind = p.flag("type", "task")
    if kind not in CREATE_TYPES:
        return f"Error: invalid issue type {kind!r} (valid: {', '.join(CREATE_TYPES)})", 1
    priority = _pri(p.flag("priority"))
    if priority is None:
        return f"Error: invalid priority {p.flag('priority')!r} (0-4 or P0-P4)", 1
    parent = p.flag("parent")
    if parent and parent not in town.beads:
        return _missing(parent)
    prefix = parent.split("-", 1)[0] if parent else town.prefix_of(town.rig)
    bead = town.add_bead(
        Bead(
            id=town.next_id(prefix, title),
            title=title,
            description=p.flag("description") or p.flag("body") or "",
            priority=priority,
            issue_type=kind,
            assignee=p.flag("assignee"),
            labels=p.values("labels") + p.values("label"),
            parent=parent,
            created_by=town.actor,
        )
    )
    for dep in p.values("deps"):
        kind_, _, other = dep.rpartition(":")
        bead.deps.append((other, kind_ or "blocks"))
    town.event("bd create", id=bead.id, title=title, issue_type=kind, priority=priority)
    if p.has("silent"):
        return bead.id, 0
    if p.has("json"):
        return json.dumps(bead.as_json(), indent=2), 0
    return f"✓ Created issue: {bead.id}\n  Title: {title}\n  Priority: P{priority}\n  Status: open", 0


def bd_update(town: SimTown, p: ParsedCommand) -> Result:
    ids = p.positionals or ([town.hooks[town.actor]] if town.actor in town.hooks else [])
    if not ids:
        return "Error: no issue id given and nothing on your hook", 1
    status = p.flag("status")
    if status is not None and status not in VALID_STATUSES:
        return f"Error: invalid status {status!r} (valid: {', '.join(VALID_STATUSES)})", 1
    priority = _pri(p.flag("priority"), default=-1)
    if priority is None:
        return f"Error: invalid priority {p.flag('priority')!r}", 1
    out = []
    for i in ids:
        b = town.beads.get(i)
        if b is None:
            return _missing(i)
        if status:
            b.status = status
        if p.has("claim"):
            b.status, b.assignee = "in_progress", town.actor
        if p.flag("assignee") is not None:
            b.assignee = p.flag("assignee") or None
        if priority >= 0:
            b.priority = priority
        for field_ in ("title", "description"):
            if p.flag(field_) is not None:
                setattr(b, field_, p.flag(field_))
        if p.flag("notes") is not None:
            b.notes = p.flag("notes") or ""
        if p.flag("append-notes"):
            b.notes = (b.notes + "\n" if b.notes else "") + p.flag("append-notes")
        b.labels += [x for x in p.values("add-label") if x not in b.labels]
        b.labels = [x for x in b.labels if x not in p.values("remove-label")]
        town.event("bd update", id=i, status=b.status)
        out.append(f"✓ Updated issue: {i}")
    return "\n".join(out), 0


def bd_close(town: SimTown, p: ParsedCommand) -> Result:
    ids = p.positionals or ([town.hooks[town.actor]] if town.actor in town.hooks else [])
    if not ids:
        return "Error: no issue id given", 1
    reason = p.flag("reason") or p.flag("message") or p.flag("resolution") or "Closed"
    out = []
    for i in ids:
        b = town.beads.get(i)
        if b is None:
            return _missing(i)
        if b.status == "closed":
            return f"Error: {i} is already closed", 1
        b.status, b.close_reason = "closed", reason
        town.event("bd close", id=i, reason=reason)
        out.append(f"✓ Closed {i}: {reason}")
    return "\n".join(out), 0


def bd_delete(town: SimTown, p: ParsedCommand) -> Result:
    out = []
    for i in p.positionals:
        if i not in town.beads:
            return _missing(i)
        del town.beads[i]
        town.event("bd delete", id=i, destructive=True)
        out.append(f"✓ Deleted {i}")
    return "\n".join(out), 0


def bd_comments_add(town: SimTown, p: ParsedCommand) -> Result:
    if len(p.positionals) < 2:
        return "Error: usage: bd comments add <issue-id> <text>", 1
    b = town.beads.get(p.positionals[0])
    if b is None:
        return _missing(p.positionals[0])
    b.comments.append(p.positionals[1])
    town.event("bd comments add", id=b.id)
    return f"Comment added to {b.id}", 0


def bd_dep_add(town: SimTown, p: ParsedCommand) -> Result:
    if len(p.positionals) < 2:
        return "Error: usage: bd dep add <issue-id> <depends-on-id>", 1
    a, other = p.positionals[:2]
    for i in (a, other):
        if i not in town.beads:
            return _missing(i)
    kind = p.flag("type", "blocks")
    town.beads[a].deps.append((other, kind))
    town.event("bd dep add", id=a, depends_on=other, dep_type=kind)
    return f"✓ Added dependency: {a} depends on {other} ({kind})", 0


def bd_formula_list(town: SimTown, p: ParsedCommand) -> Result:
    if not town.formulas:
        return "No formulas found.", 0
    return "\n".join(f"{f.name:<28} {f.description}" for f in town.formulas.values()), 0


def _formula(town: SimTown, name: str) -> Result | None:
    f = town.formulas.get(name)
    if f is None:
        return None
    lines = [f"Formula: {f.name}", f.description, ""]
    if f.vars:
        lines.append("Vars:")
        for k, default in f.vars.items():
            lines.append(f"  {k}: " + ("(required)" if default is None else f"default {default!r}"))
        lines.append("")
    lines.append(f"Steps ({len(f.steps)}):")
    lines += [f"  {i}. {sid}: {title}" for i, (sid, title) in enumerate(f.steps, 1)]
    return "\n".join(lines), 0


def bd_formula_show(town: SimTown, p: ParsedCommand) -> Result:
    name = p.positionals[0]
    return _formula(town, name) or (f"Error: formula {name!r} not found", 1)


def bd_mol_pour(town: SimTown, p: ParsedCommand) -> Result:
    name = p.positionals[0]
    f = town.formulas.get(name)
    if f is None:
        return f"Error: formula or proto {name!r} not found (see `bd formula list`)", 1
    given: dict[str, str] = {}
    for v in p.values("var"):
        k, eq, val = v.partition("=")
        if not eq:
            return f"Error: invalid --var {v!r} (want key=value)", 1
        given[k] = val
    unknown = sorted(set(given) - set(f.vars))
    if unknown:
        return f"Error: unknown variable {unknown[0]!r} for {name}", 1
    missing = [k for k, d in f.vars.items() if d is None and k not in given]
    if missing:
        return f"Error: missing required variable: {missing[0]} (pass --var {missing[0]}=<value>)", 1
    values = {k: given.get(k, d or "") for k, d in f.vars.items()}
    prefix = town.prefix_of(town.rig)
    root = town.add_bead(
        Bead(
            id=town.next_id(f"{prefix}-mol", name),
            title=f"{name}" + (f" ({', '.join(f'{k}={v}' for k, v in values.items())})" if values else ""),
            issue_type="molecule",
            assignee=p.flag("assignee"),
            created_by=town.actor,
        )
    )
    steps = []
    for k, (sid, title) in enumerate(f.steps, 1):
        child = town.add_bead(
            Bead(id=f"{root.id}.{k}", title=title, issue_type="task", parent=root.id, created_by=town.actor)
        )
        if steps:
            child.deps.append((steps[-1], "blocks"))
        steps.append(child.id)
        del sid
    town.molecules[root.id] = Molecule(root.id, name, None, values, steps)
    town.event("bd mol pour", id=root.id, formula=name, vars=values)
    return (
        f"✓ Poured mol: created {len(steps) + 1} issues\n  Root issue: {root.id}\n  Phase: liquid (persistent)",
        0,
    )


def bd_mol_show(town: SimTown, p: ParsedCommand) -> Result:
    m = town.molecules.get(p.positionals[0])
    if m is None:
        return _missing(p.positionals[0])
    lines = [f"{m.id}  {m.formula}"]
    lines += [_line(town.beads[s]) for s in m.step_ids if s in town.beads]
    return "\n".join(lines), 0


# -- gt ----------------------------------------------------------------------------------------------


def _hook_text(town: SimTown, address: str) -> str:
    b = town.hooked_bead(address)
    if b is None:
        return "Nothing on hook."
    text = f"Hooked: {b.id}  {b.title}"
    for m in town.molecules.values():
        if m.attached_to == b.id:
            text += f"\nMolecule: {m.id}  {m.formula}"
    return text


def gt_prime(town: SimTown, p: ParsedCommand) -> Result:
    from gastown_ft.corpus.examples import system_prompt

    lines = [
        f"# {town.role.capitalize()} Context",
        "",
        system_prompt(town.role, town.rig),
        f"You are {town.actor}. Working directory: {town.workdir}",
        "",
        "## Your hook",
        _hook_text(town, town.actor),
    ]
    b = town.hooked_bead()
    if b is not None:
        lines += ["", f"{b.id} ({b.issue_type}, P{b.priority}): {b.title}", b.description]
        for m in town.molecules.values():
            if m.attached_to == b.id:
                f = town.formulas.get(m.formula)
                if f:
                    lines += ["", f"**Formula Checklist** ({len(f.steps)} steps from {f.name}):"]
                    lines += [f"### Step {i}: {title}" for i, (_, title) in enumerate(f.steps, 1)]
    unread = [m for m in town.mail if m.to == town.actor and not m.read]
    if unread:
        lines += ["", f"You have {len(unread)} unread message(s): `gt mail inbox`."]
    if town.role == "polecat":
        lines += ["", "When the work is done, run `gt done`. No exceptions. No waiting."]
    return "\n".join(lines), 0


def gt_hook(town: SimTown, p: ParsedCommand) -> Result:
    target = p.positionals[1] if len(p.positionals) > 1 else town.actor
    if p.has("clear"):
        old = town.hooks.pop(target, None)
        town.event("unhook", agent=target, bead=old)
        return (f"Cleared hook of {target} ({old})" if old else "Nothing on hook."), 0
    if not p.positionals:
        if p.has("json"):
            b = town.hooked_bead(target)
            return json.dumps({"agent": target, "bead": b.as_json() if b else None}), 0
        return _hook_text(town, target), 0
    bead_id = p.positionals[0]
    b = town.beads.get(bead_id)
    if b is None:
        return _missing(bead_id)
    if target in town.hooks and town.hooks[target] != bead_id and not p.has("force"):
        return f"Error: {target} already has {town.hooks[target]} hooked (use --force to replace)", 1
    town.hooks[target] = bead_id
    b.status, b.assignee = "hooked", target
    town.event("hook", agent=target, bead=bead_id)
    return f"Hooked {bead_id} to {target}", 0


def gt_unsling(town: SimTown, p: ParsedCommand) -> Result:
    target = p.positionals[1] if len(p.positionals) > 1 else town.actor
    bead_id = town.hooks.get(target)
    if bead_id is None or (p.positionals and p.positionals[0] != bead_id):
        return f"Error: {p.positionals[0] if p.positionals else 'nothing'} is not on {target}'s hook", 1
    del town.hooks[target]
    b = town.beads.get(bead_id)
    if b:
        b.status, b.assignee = "open", None
    town.event("unhook", agent=target, bead=bead_id)
    return f"Unslung {bead_id} from {target}", 0


def _spawn(town: SimTown, rig: str) -> Polecat:
    used = {pc.name for pc in town.polecats.values() if pc.rig == rig}
    name = next((n for n in town.name_pool if n not in used), f"polecat{len(used) + 1}")
    pc = Polecat(rig, name)
    town.polecats[pc.address] = pc
    town.event("spawn", agent=pc.address)
    return pc


def gt_sling(town: SimTown, p: ParsedCommand) -> Result:
    what = p.positionals[0]
    target = p.positionals[1] if len(p.positionals) > 1 else None
    if what in town.formulas:
        on = p.flag("on")
        if not on or on not in town.beads:
            return f"Error: slinging formula {what} needs --on <bead> (an existing bead)", 1
        mol = Molecule(town.next_id(f"{town.prefix_of(town.rig)}-wisp", what), what, on, {}, [])
        town.molecules[mol.id] = mol
        what = on
    b = town.beads.get(what)
    if b is None:
        return _missing(what)
    if b.status == "closed":
        return f"Error: {what} is closed", 1
    if target is None:
        address = town.actor
        note = ""
    elif target in town.rigs:
        pc = _spawn(town, target)
        address = pc.address
        note = f"\n  spawned session gt-{target}-{pc.name}"
    elif target in town.polecats or "/" in target:
        address = target
        note = ""
    else:
        return (
            f"Error: unknown target {target!r} (a rig: {', '.join(sorted(town.rigs))}, or an agent address)",
            1,
        )
    town.hooks[address] = b.id
    b.status, b.assignee = "hooked", address
    town.event("sling", bead=b.id, agent=address)
    mol = next((m for m in town.molecules.values() if m.attached_to == b.id), None)
    return f"Slung {b.id} to {address}{note}" + (f"\n  molecule: {mol.formula}" if mol else ""), 0


def gt_done(town: SimTown, p: ParsedCommand) -> Result:
    b = town.hooked_bead()
    if b is None:
        return "Error: nothing on your hook to submit", 1
    repo = town.repo
    if not repo.clean():
        return "Error: uncommitted changes in your worktree; commit them (or discard on purpose) first", 1
    status = (p.flag("status") or "").upper()
    no_changes = (
        b.status == "closed" or status in ("ESCALATED", "DEFERRED") or p.flag("cleanup-status") == "clean"
    )
    branch = repo.head
    base = repo.branches["main"][-1]
    commits = [s for s in repo.branches[branch] if s not in repo.branches["main"]]
    town.hooks.pop(town.actor, None)
    if not commits:
        if not no_changes:
            town.hooks[town.actor] = b.id
            return (
                f"Error: no commits on {branch} beyond main; if the bead needs no change, close it with "
                '`bd close <id> --reason "no-changes: ..."` first',
                1,
            )
        town.done = True
        town.event("done", bead=b.id, mr=None, status=status or "COMPLETED")
        return (
            f"No changes to submit for {b.id}\nNotified {town.rig}/witness (POLECAT_DONE)\nSession ending.",
            0,
        )
    if repo.ahead(branch) or branch not in repo.remote:
        repo.remote[branch] = list(repo.branches[branch])  # gt done pushes the branch itself
        repo.upstream[branch] = branch
        town.event("push", branch=branch, via="gt done")
    mr = town.add_bead(
        Bead(
            id=town.next_id(town.prefix_of(town.rig), "mr", b.id),
            title=f"Merge {branch}",
            issue_type="merge-request",
            created_by=town.actor,
            description=f"source_issue: {b.id}\nbranch: {branch}",
        )
    )
    town.merge_requests.append({"id": mr.id, "bead": b.id, "branch": branch, "commits": commits})
    town.mail.append(
        Mail(town.next_id("hq-m", mr.id), town.actor, f"{town.rig}/witness", f"POLECAT_DONE {b.id}", mr.id)
    )
    town.done = True
    town.event("done", bead=b.id, mr=mr.id, status=status or "COMPLETED")
    head = commits[-1]
    return (
        f"Submitted merge request {mr.id} for {branch} ({base[:7]}..{head[:7]})\n"
        f"Notified {town.rig}/witness (POLECAT_DONE)\nSession ending. Sandbox preserved."
    ), 0


def gt_mail_inbox(town: SimTown, p: ParsedCommand) -> Result:
    me = p.positionals[0] if p.positionals else p.flag("address") or town.actor
    mine = [m for m in town.mail if m.to == me and (not p.has("unread") or not m.read)]
    if p.has("json"):
        return json.dumps([m.__dict__ for m in mine], indent=2), 0
    unread = sum(not m.read for m in mine)
    lines = [f"INBOX {me} ({unread} unread)"]
    lines += [f"  {m.id}  {m.subject:<36} from {m.sender}" for m in mine]
    return "\n".join(lines) if mine else f"INBOX {me} (empty)", 0


def gt_mail_read(town: SimTown, p: ParsedCommand) -> Result:
    key = p.positionals[0]
    mine = [m for m in town.mail if m.to == town.actor]
    m = next((x for x in town.mail if x.id == key), None)
    if m is None and key.isdigit() and 0 < int(key) <= len(mine):
        m = mine[int(key) - 1]
    if m is None:
        return f"Error: message {key!r} not found", 1
    m.read = True
    return f"From: {m.sender}\nTo: {m.to}\nSubject: {m.subject}\n\n{m.body}", 0


def gt_mail_send(town: SimTown, p: ParsedCommand) -> Result:
    to = p.flag("to") or (town.actor if p.has("self") else p.positionals[0] if p.positionals else None)
    if not to:
        return "Error: missing recipient", 1
    subject = p.flag("subject") or ""
    if not subject:
        return "Error: --subject (-s) is required", 1
    mail = Mail(
        town.next_id("hq-m", to, subject), town.actor, to, subject, p.flag("message") or p.flag("body") or ""
    )
    town.mail.append(mail)
    town.event("mail", to=to, subject=subject)
    return f"✓ Message sent to {to} ({mail.id})", 0


def gt_nudge(town: SimTown, p: ParsedCommand) -> Result:
    target = p.positionals[0]
    message = p.flag("message") or (p.positionals[1] if len(p.positionals) > 1 else "")
    pc = town.polecats.get(target) or town.polecats.get(
        f"{target.split('/')[0]}/polecats/{target.split('/')[-1]}" if "/" in target else ""
    )
    if pc is None and target not in (
        f"{town.rig}/witness",
        f"{town.rig}/refinery",
        "mayor/",
        "mayor",
        "deacon",
    ):
        return f"Error: no agent {target!r} to nudge", 1
    if pc is not None:
        pc.nudges.append(message)
        target = pc.address
    town.event("nudge", agent=target, message=message)
    return f"✓ Nudged {target}", 0


def gt_escalate(town: SimTown, p: ParsedCommand) -> Result:
    desc = p.positionals[0] if p.positionals else p.flag("reason") or ""
    if not desc:
        return "Error: describe what is blocked", 1
    severity = (p.flag("severity") or "MEDIUM").upper()
    b = town.add_bead(
        Bead(
            town.next_id("hq", desc),
            f"ESCALATION: {desc}",
            issue_type="task",
            priority=1,
            created_by=town.actor,
        )
    )
    b.labels.append(f"severity:{severity.lower()}")
    town.event("escalate", id=b.id, severity=severity, description=desc)
    return f"✓ Escalated ({severity}): {b.id}\n  Routed to: {town.rig}/witness, mayor/", 0


def gt_polecat_list(town: SimTown, p: ParsedCommand) -> Result:
    rig = p.positionals[0] if p.positionals else None
    pcs = [pc for pc in town.polecats.values() if rig is None or pc.rig == rig]
    if not pcs:
        return "No polecats.", 0
    lines = []
    for pc in pcs:
        bead = town.hooks.get(pc.address)
        lines.append(
            f"{pc.address:<24} {pc.state:<9} last output {pc.last_output:<8} hook {bead or '(empty)'}"
        )
    return "\n".join(lines), 0


def gt_polecat_nuke(town: SimTown, p: ParsedCommand) -> Result:
    out = []
    for target in p.positionals:
        rig, _, name = target.partition("/")
        pc = town.polecats.get(f"{rig}/polecats/{name.split('/')[-1]}")
        if pc is None:
            return f"Error: no polecat {target!r}", 1
        if pc.unpushed_commits and not p.has("force"):
            return (
                f"Error: {pc.address} has {pc.unpushed_commits} unpushed commits (use --force to nuke anyway)",
                1,
            )
        del town.polecats[pc.address]
        bead = town.hooks.pop(pc.address, None)
        town.event("nuke", agent=pc.address, bead=bead, lost_commits=pc.unpushed_commits, destructive=True)
        out.append(
            f"☠ Nuked {pc.address}"
            + (f" (lost {pc.unpushed_commits} unpushed commits)" if pc.unpushed_commits else "")
        )
    return "\n".join(out), 0


def gt_convoy_create(town: SimTown, p: ParsedCommand) -> Result:
    name, issues = p.positionals[0], p.positionals[1:]
    for i in issues:
        if i not in town.beads:
            return _missing(i)
    b = town.add_bead(Bead(town.next_id("hq-cv", name), name, issue_type="convoy", created_by=town.actor))
    town.event("convoy create", id=b.id, issues=issues)
    rigs = {i.split("-", 1)[0] for i in issues}
    return f"Created convoy {b.id} tracking {len(issues)} issues ({len(rigs)} rigs)\n  owner: {town.actor}", 0


def gt_formula_list(town: SimTown, p: ParsedCommand) -> Result:
    return bd_formula_list(town, p)


def gt_formula_show(town: SimTown, p: ParsedCommand) -> Result:
    return bd_formula_show(town, p)


def gt_mol_status(town: SimTown, p: ParsedCommand) -> Result:
    b = town.hooked_bead()
    mols = [m for m in town.molecules.values() if b and m.attached_to == b.id]
    if not mols:
        return "No molecule attached to your hook.", 0
    m = mols[0]
    f = town.formulas.get(m.formula)
    lines = [f"Molecule: {m.id} ({m.formula}) on {m.attached_to}"]
    if f:
        lines += [f"  {i}. {title}" for i, (_, title) in enumerate(f.steps, 1)]
    return "\n".join(lines), 0


HANDLERS: dict[str, Handler] = {
    "bd show": bd_show,
    "bd list": bd_list,
    "bd ready": bd_ready,
    "bd create": bd_create,
    "bd update": bd_update,
    "bd close": bd_close,
    "bd delete": bd_delete,
    "bd comments add": bd_comments_add,
    "bd dep add": bd_dep_add,
    "bd formula list": bd_formula_list,
    "bd formula show": bd_formula_show,
    "bd mol pour": bd_mol_pour,
    "bd mol show": bd_mol_show,
    "gt prime": gt_prime,
    "gt hook": gt_hook,
    "gt unsling": gt_unsling,
    "gt sling": gt_sling,
    "gt done": gt_done,
    "gt mail inbox": gt_mail_inbox,
    "gt mail read": gt_mail_read,
    "gt mail send": gt_mail_send,
    "gt nudge": gt_nudge,
    "gt escalate": gt_escalate,
    "gt polecat list": gt_polecat_list,
    "gt polecat nuke": gt_polecat_nuke,
    "gt convoy create": gt_convoy_create,
    "gt formula list": gt_formula_list,
    "gt formula show": gt_formula_show,
    "gt mol status": gt_mol_status,
    "gt mol current": gt_mol_status,
}
