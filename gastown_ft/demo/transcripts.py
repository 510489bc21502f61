"""Claude Code session transcripts of the demo town's agents.

One JSONL file per session under `<claude-projects>/<encoded cwd>/<session-uuid>.jsonl`. Lines form
a tree through uuid/parentUuid; sub-agent lines (`isSidechain: true`) have their own chain. The
sessions cover the cases a reader must handle: tool use, a failed and interrupted session, a
compacted one (summary line + compact_boundary keeping a preserved segment, the conversation going on
from the preserved tail), an in-file sidechain, a sub-agent file (`<session>/subagents/agent-<id>.jsonl`
with its `.meta.json`, started by an `Agent` call), a steering message typed while a tool ran
(`queue-operation` enqueue / remove), a branch (an edited user message), unknown line types and
fields, and (as a bad input) a truncated last line.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gastown_ft.demo.canaries import AWS_ACCESS_KEY as CANARY_AWS_KEY
from gastown_ft.demo.canaries import GITHUB_TOKEN as CANARY_GITHUB_TOKEN
from gastown_ft.demo.docs import COURIER_BACKOFF, LEDGER_MONEY, render_role
from gastown_ft.demo.world import CLAUDE_VERSION, MODEL, SUBAGENT_MODEL, World, encode_cwd, iso_ms

B62 = string.ascii_letters + string.digits
READ_REMINDER = (
    "<system-reminder>\nWhenever you read a file, you should consider whether it looks malicious. "
    "You may explain what it does, but do not improve or extend malicious code.\n</system-reminder>"
)
_DEFAULT = object()


@dataclass
class Transcript:
    rel_path: str  # "claude-projects/<encoded cwd>/<session>.jsonl"
    lines: list[str]
    end: datetime
    truncated: bool = False  # last line cut mid-JSON (no trailing newline)

    def text(self) -> str:
        body = "\n".join(self.lines)
        return body if self.truncated else body + "\n"


@dataclass
class Session:
    w: World
    rng: random.Random
    cwd: Path
    branch: str
    t: datetime
    sid: str = ""
    lines: list[dict[str, Any]] = field(default_factory=list)
    last: str | None = None  # the newest line of the main thread
    side_last: str | None = None  # the newest line of the current sidechain
    agent_id: str | None = None  # the sub-agent writing sidechain lines
    extra: list[Transcript] = field(default_factory=list)  # sub-agent files and their meta.json

    def __post_init__(self) -> None:
        self.sid = self.new_uuid()

    # -- ids and time -------------------------------------------------------------------------
    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def token(self, prefix: str, n: int) -> str:
        return prefix + "".join(self.rng.choice(B62) for _ in range(n))

    def tick(self, lo: float = 1.0, hi: float = 12.0) -> str:
        self.t += timedelta(milliseconds=int(self.rng.uniform(lo, hi) * 1000))
        return iso_ms(self.t)

    @property
    def rel_dir(self) -> str:
        return f"claude-projects/{encode_cwd(self.cwd)}"

    @property
    def rel_path(self) -> str:
        return f"{self.rel_dir}/{self.sid}.jsonl"

    # -- lines --------------------------------------------------------------------------------
    def _line(
        self,
        type_: str,
        message: dict | None,
        parent: Any,
        sidechain: bool,
        extra: dict,
        lo: float = 1.0,
        hi: float = 12.0,
    ) -> str:
        parent_uuid = self.last if parent is _DEFAULT else parent
        u = self.new_uuid()
        line: dict[str, Any] = {
            "parentUuid": parent_uuid,
            "isSidechain": sidechain,
            "userType": "external",
            "cwd": str(self.cwd),
            "sessionId": self.sid,
            "version": CLAUDE_VERSION,
            "gitBranch": self.branch,
            "type": type_,
        }
        if message is not None:
            line["message"] = message
        if type_ == "assistant":
            line["requestId"] = self.token("req_011C", 18)
        line["uuid"] = u
        line["timestamp"] = self.tick(lo, hi)
        if sidechain and self.agent_id:
            line["agentId"] = self.agent_id
        line.update(extra)
        self.lines.append(line)
        if not sidechain:
            self.last = u
        return u

    def user(self, content: Any, parent: Any = _DEFAULT, sidechain: bool = False, **extra: Any) -> str:
        return self._line("user", {"role": "user", "content": content}, parent, sidechain, extra, 5, 60)

    def assistant(
        self,
        blocks: list[dict],
        stop: str | None = "tool_use",
        parent: Any = _DEFAULT,
        sidechain: bool = False,
        model: str = MODEL,
        **extra: Any,
    ) -> str:
        # Token counts follow the content length, minus the workdir (so any workdir gives the same count).
        chars = sum(len(json.dumps(b).replace(str(self.w.workdir), "")) for b in blocks)
        out_tokens = chars // 4 + self.rng.randrange(5, 40)
        msg = {
            "model": model,
            "id": self.token("msg_01", 22),
            "type": "message",
            "role": "assistant",
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.rng.randrange(2, 12),
                "cache_creation_input_tokens": self.rng.randrange(200, 4000),
                "cache_read_input_tokens": self.rng.randrange(9000, 60000),
                "output_tokens": out_tokens,
                "service_tier": "standard",
            },
        }
        return self._line("assistant", msg, parent, sidechain, extra, 2, 25)

    def thinking(self, text: str) -> dict:
        sig = base64.b64encode(self.rng.randbytes(96)).decode("ascii")
        return {"type": "thinking", "thinking": text, "signature": sig}

    def text_block(self, text: str) -> dict:
        return {"type": "text", "text": text}

    def tool(
        self,
        name: str,
        input: dict,
        result: str | list,
        *,
        is_error: bool = False,
        think: str | None = None,
        say: str | None = None,
        sidechain: bool = False,
        model: str = MODEL,
        result_extra: dict | None = None,
        steer: str | None = None,
    ) -> tuple[str, str]:
        """An assistant tool_use line and the user tool_result line that answers it; `steer` is a
        message the user typed while the tool ran (queued, then handed to the agent with the result)."""
        blocks: list[dict] = []
        if think:
            blocks.append(self.thinking(think))
        if say:
            blocks.append(self.text_block(say))
        tid = self.token("toolu_01", 22)
        blocks.append({"type": "tool_use", "id": tid, "name": name, "input": input})
        parent = self.last if not sidechain else self.side_last
        a = self.assistant(blocks, "tool_use", parent=parent, sidechain=sidechain, model=model)
        if sidechain:
            self.side_last = a
        if steer:
            for op in ("enqueue", "remove"):
                self.raw(
                    {
                        "type": "queue-operation",
                        "operation": op,
                        "timestamp": self.tick(0.5, 3),
                        "sessionId": self.sid,
                        "content": steer,
                    }
                )
        r = self.user(
            [{"tool_use_id": tid, "type": "tool_result", "content": result, "is_error": is_error}],
            parent=a,
            sidechain=sidechain,
            **(result_extra or {}),
        )
        if sidechain:
            self.side_last = r
        return a, r

    def bash(
        self,
        command: str,
        output: str,
        *,
        is_error: bool = False,
        think: str | None = None,
        say: str | None = None,
        description: str | None = None,
        steer: str | None = None,
    ) -> tuple[str, str]:
        inp: dict[str, Any] = {"command": command}
        if description:
            inp["description"] = description
        extra = (
            {
                "toolUseResult": {
                    "stdout": output if not is_error else "",
                    "stderr": output if is_error else "",
                    "interrupted": False,
                    "isImage": False,
                }
            }
            if self.rng.random() < 0.3
            else None
        )
        return self.tool(
            "Bash", inp, output, is_error=is_error, think=think, say=say, result_extra=extra, steer=steer
        )

    def subagent(
        self,
        description: str,
        prompt: str,
        steps: list[tuple[str, dict, str]],
        report: str,
        agent_type: str = "general-purpose",
    ) -> tuple[str, str]:
        """An `Agent` call whose sub-agent writes its own file, `<session>/subagents/agent-<id>.jsonl`
        (with `agent-<id>.meta.json`), and the tool result that carries its report and agent id."""
        tid = self.token("toolu_01", 22)
        call = self.assistant(
            [
                {
                    "type": "tool_use",
                    "id": tid,
                    "name": "Agent",
                    "input": {"description": description, "prompt": prompt, "subagent_type": agent_type},
                }
            ]
        )
        agent_id = f"a{self.rng.getrandbits(64):016x}"
        sub = Session(self.w, self.rng, self.cwd, self.branch, self.t)
        sub.sid, sub.agent_id = self.sid, agent_id
        sub.side_last = sub.user(prompt, parent=None, sidechain=True)
        for name, inp, out in steps:
            sub.tool(name, inp, out, sidechain=True, model=SUBAGENT_MODEL)
        sub.assistant(
            [sub.text_block(report)], "end_turn", parent=sub.side_last, sidechain=True, model=SUBAGENT_MODEL
        )
        folder = f"{self.rel_dir}/{self.sid}/subagents/agent-{agent_id}"
        self.extra.append(sub.transcript(rel_path=f"{folder}.jsonl"))
        meta = {"agentType": agent_type, "description": description}
        self.extra.append(Transcript(f"{folder}.meta.json", [json.dumps(meta)], sub.t))
        self.t = sub.t
        trailer = (
            f"agentId: {agent_id} (use SendMessage with to: '{agent_id}' to continue this agent)\n"
            f"<usage>total_tokens: {self.rng.randrange(8000, 30000)}\ntool_uses: {len(steps)}\n"
            f"duration_ms: {self.rng.randrange(4000, 40000)}</usage>"
        )
        result = self.user(
            [
                {
                    "tool_use_id": tid,
                    "type": "tool_result",
                    "is_error": False,
                    "content": [{"type": "text", "text": report}, {"type": "text", "text": trailer}],
                }
            ],
            parent=call,
            toolUseResult={"status": "completed", "agentId": agent_id, "totalToolUseCount": len(steps)},
        )
        return call, result

    def read(self, path: str, text: str, **kw: Any) -> tuple[str, str]:
        numbered = "\n".join(f"{i:>6}\u2192{line}" for i, line in enumerate(text.splitlines(), start=1))
        # Claude Code appends this reminder to what Read returns: context, not the file.
        numbered += f"\n\n{READ_REMINDER}\n"
        return self.tool("Read", {"file_path": path}, numbered, **kw)

    def say(self, text: str, think: str | None = None, stop: str | None = "end_turn") -> str:
        blocks = ([self.thinking(think)] if think else []) + [self.text_block(text)]
        return self.assistant(blocks, stop)

    def at_least(self, hhmm: str) -> None:
        """Jump the clock forward to hh:mm on the demo day (work happened off-transcript)."""
        self.t = max(self.t, self.w.at(hhmm, self.rng.randrange(0, 40)))

    def raw(self, obj: dict) -> None:
        """A line of a type readers do not know (progress, attachment, file-history-snapshot)."""
        self.tick(0.1, 1)
        self.lines.append(obj)

    def progress(self, hook: str, command: str) -> None:
        u = self.new_uuid()
        self.raw(
            {
                "parentUuid": self.last,
                "isSidechain": False,
                "userType": "external",
                "cwd": str(self.cwd),
                "sessionId": self.sid,
                "version": CLAUDE_VERSION,
                "gitBranch": self.branch,
                "type": "progress",
                "data": {"type": "hook_progress", "hookEvent": hook, "hookName": hook, "command": command},
                "parentToolUseID": None,
                "uuid": u,
                "timestamp": iso_ms(self.t),
            }
        )

    def snapshot(self, message_uuid: str, files: list[str]) -> None:
        backups = {
            f: {
                "backupFileName": f"{self.rng.getrandbits(64):016x}@v1",
                "version": 1,
                "backupTime": iso_ms(self.t),
            }
            for f in files
        }
        self.raw(
            {
                "type": "file-history-snapshot",
                "messageId": message_uuid,
                "snapshot": {
                    "messageId": message_uuid,
                    "trackedFileBackups": backups,
                    "timestamp": iso_ms(self.t),
                },
                "isSnapshotUpdate": bool(files),
            }
        )

    def prime(self, role: str, hook: str, *, rig: str = "", name: str = "", env: str = "") -> str:
        body = render_role(role, self.w, rig=rig, name=name, workdir=str(self.cwd))
        text = f"{body}\n## Your hook\n{hook}\n\n{env}".rstrip() + "\n"
        u = self.user(text, parent=None, permissionMode="bypassPermissions")
        self.progress("SessionStart", "gt prime --hook")
        return u

    def attachment(self, kind: str, content: Any) -> None:
        u = self.new_uuid()
        self.raw(
            {
                "parentUuid": self.last,
                "isSidechain": False,
                "userType": "external",
                "cwd": str(self.cwd),
                "sessionId": self.sid,
                "version": CLAUDE_VERSION,
                "gitBranch": self.branch,
                "type": "attachment",
                "attachment": {"type": kind, "content": content},
                "uuid": u,
                "timestamp": iso_ms(self.t),
            }
        )
        self.last = u  # attachments sit in the chain: the next line's parent

    def transcript(self, *, truncate_last: bool = False, rel_path: str | None = None) -> Transcript:
        rendered = [json.dumps(line, ensure_ascii=False, separators=(",", ":")) for line in self.lines]
        if truncate_last:
            # Cut inside the last tool input, at a point that does not depend on the workdir's length.
            last = rendered[-1]
            marker = last.rfind('"new_string":"')
            cut = marker + 40 if marker >= 0 else len(last) // 2
            rendered[-1] = last[:cut]
        return Transcript(rel_path or self.rel_path, rendered, self.t, truncated=truncate_last)


# ------------------------------------------------------------------------------------------------
# Sessions
# ------------------------------------------------------------------------------------------------


def _session(w: World, name: str, agent: str, branch: str, start: datetime) -> Session:
    return Session(w, w.rng(f"transcript-{name}"), w.agent_dir(agent), branch, start)


def mayor_session(w: World) -> Session:
    s = _session(w, "mayor", "mayor", "", w.at("08:50"))
    ids, o, p = w.ids, w.overseer, w.planter
    L, C = w.rigs[0].name, w.rigs[1].name
    s.prime(
        "mayor", "Nothing hooked. Check mail, then wait for the overseer.", env="GT_ROLE=mayor BD_ACTOR=mayor"
    )
    s.bash(
        "gt mail inbox",
        "INBOX mayor (2 unread)\n"
        f"  hq-m1  HANDOFF: mayor session cycle        from mayor      "
        f"{(w.day - timedelta(days=1)):%b %d}\n"
        "  hq-m2  Weekly town digest                   from deacon     3d ago",
        think="Fresh session. Mail first: there may be a handoff from my previous session.",
        description="Check mayor inbox",
    )
    before_edit = s.say(
        "Inbox read: yesterday's handoff says the importer convoy was drafted but not "
        "created. Ready when you are."
    )
    phone = p.record("phone", o.phone, s.rel_path)
    # A branch: the overseer's first message is abandoned and sent again, edited.
    s.user("Morning. Two things before Thursday: the CSV importer and courier's retries.", parent=before_edit)
    s.user(
        "Morning. Three things before the bank demo on Thursday: the CSV importer still chokes on quoted "
        "payees, the rounding bug slit was looking at, and courier's retries all fire at the same "
        f"moment. One convoy, polecats on all three. I'm on a train until noon; text {phone} if "
        "something is on fire.",
        parent=before_edit,
    )
    s.attachment(
        "todo",
        [
            {
                "content": "Create reliability convoy",
                "status": "in_progress",
                "activeForm": "Creating reliability convoy",
            },
            {
                "content": "Sling the three fixes",
                "status": "pending",
                "activeForm": "Slinging the three fixes",
            },
        ],
    )
    s.bash(
        f"bd show {ids['le_csv']} {ids['le_round']} {ids['co_backoff']} --short",
        f"{ids['le_csv']}  [P1 bug  open]  Handle quoted commas in payee field  "
        f"(parent {ids['le_epic']})\n"
        f"{ids['le_round']}  [P1 bug  open]  Rounding drifts by one cent on split transactions\n"
        f"{ids['co_backoff']}  [P1 bug  open]  Retry backoff ignores jitter after attempt 6",
        think="The three map to existing beads in two rigs. Routes send le- to ledger and co- to courier. "
        "Check they are open and unassigned before making the convoy.",
        steer="If only one lands before Thursday, make it the rounding bug.",
    )
    s.at_least("08:57")
    s.bash(
        f'gt convoy create "Reliability push: importer and delivery fixes" {ids["le_csv"]} '
        f"{ids['le_round']} {ids['co_backoff']}",
        f"Created convoy {ids['hq_convoy']} tracking 3 issues (2 rigs)\n  notify: mayor/  owner: mayor",
    )
    s.at_least("09:01")
    tids = [s.token("toolu_01", 22) for _ in range(3)]
    targets = [(ids["le_csv"], L, "nux"), (ids["le_round"], L, "slit"), (ids["co_backoff"], C, "furiosa")]
    a = s.assistant(
        [s.text_block("Slinging all three in parallel.")]
        + [
            {
                "type": "tool_use",
                "id": tid,
                "name": "Bash",
                "input": {"command": f"gt sling {bead} {rig}", "description": f"Dispatch {bead}"},
            }
            for tid, (bead, rig, _) in zip(tids, targets, strict=True)
        ]
    )
    s.user(
        [
            {
                "tool_use_id": tid,
                "type": "tool_result",
                "is_error": False,
                "content": f"Slung {bead} to {rig}/polecats/{pc}\n  spawned session gt-{rig}-{pc}\n"
                f"  molecule: mol-polecat-work (rig override)",
            }
            for tid, (bead, rig, pc) in zip(tids, targets, strict=True)
        ],
        parent=a,
    )
    s.say(
        f"Convoy {ids['hq_convoy']} is in flight: nux has the CSV fix, slit the rounding bug, furiosa the "
        "courier backoff. I'll watch for POLECAT_DONE and only text you for a P0.",
        think="All three dispatched. The witnesses will report completions; nothing else to do now.",
    )
    return s


def polecat_nux_session(w: World, fix_sha: str, parent_sha: str, early_importer: str) -> Session:
    L = w.rigs[0].name
    ids = w.ids
    bead = ids["le_csv"]
    s = _session(w, "nux", f"{L}/polecats/nux", f"polecat/nux/{bead}", w.at("09:05"))
    s.prime(
        "polecat",
        f"{bead} (bug, P1): Handle quoted commas in payee field\n"
        f"Molecule: {ids['nux_wisp']} (mol-polecat-work, rig override), step: load-context",
        rig=L,
        name="nux",
        env=f"GT_ROLE=polecat GT_RIG={L} GT_POLECAT=nux BD_ACTOR={L}/polecats/nux",
    )
    s.bash(
        "gt hook",
        f"Hooked: {bead}  Handle quoted commas in payee field\n"
        f"Molecule: {ids['nux_wisp']}  mol-polecat-work  step 1/7 load-context",
        think="Work is on my hook, so I run it. Read the bead first.",
    )
    s.bash(
        f"bd show {bead}",
        f"{bead}  Handle quoted commas in payee field\nStatus: hooked  Priority: P1  Type: bug\n"
        f"Assignee: {L}/polecats/nux\nParent: {ids['le_epic']}\n\n"
        'Payees like "Smith, J." are split into two columns and the amount is read from the wrong '
        "field, so the import fails with InvalidOperation.",
    )
    # Sidechain: an Explore sub-agent finds the parsing code.
    prompt = (
        "Find where ledger splits CSV rows into fields and list every place that would break on a "
        "quoted field containing a comma. Report file:line only."
    )
    tid = s.token("toolu_01", 22)
    task = s.assistant(
        [
            s.thinking("Small repo, but let a sub-agent do the search while I read the tests."),
            {
                "type": "tool_use",
                "id": tid,
                "name": "Task",
                "input": {
                    "description": "Find CSV splitting code",
                    "prompt": prompt,
                    "subagent_type": "Explore",
                },
            },
        ]
    )
    s.agent_id = f"{s.rng.getrandbits(32):08x}"
    s.side_last = s.user(prompt, parent=None, sidechain=True)
    s.tool(
        "Grep",
        {"pattern": 'split\\(","\\)', "path": str(s.cwd), "output_mode": "content", "-n": True},
        'ledger/importer.py:23:        date, payee, amount = line.split(",")[:3]',
        sidechain=True,
        model=SUBAGENT_MODEL,
    )
    s.side_last = s.assistant(
        [
            s.text_block(
                "One place: ledger/importer.py:23 splits on every comma, "
                "including commas inside quotes. Nothing else parses CSV."
            )
        ],
        "end_turn",
        parent=s.side_last,
        sidechain=True,
        model=SUBAGENT_MODEL,
    )
    s.user(
        [
            {
                "tool_use_id": tid,
                "type": "tool_result",
                "is_error": False,
                "content": [
                    {
                        "type": "text",
                        "text": "ledger/importer.py:23 splits rows with str.split(','), "
                        "which breaks quoted payees. No other CSV parsing.",
                    }
                ],
            }
        ],
        parent=task,
    )
    s.read(f"{s.cwd}/ledger/importer.py", early_importer)
    edit_a, _ = s.tool(
        "Edit",
        {
            "file_path": f"{s.cwd}/ledger/importer.py",
            "old_string": "    for line in text.splitlines()[1:]:\n"
            '        date, payee, amount = line.split(",")[:3]',
            "new_string": "    rows = csv.DictReader(io.StringIO(text))\n    for row in rows:",
        },
        f"The file {s.cwd}/ledger/importer.py has been updated.",
        say="Switching to csv.DictReader so quoting is handled by the csv module.",
    )
    s.snapshot(edit_a, ["ledger/importer.py"])
    s.bash(
        "uv run pytest -q",
        "F..\n=================================== FAILURES ===================================\n"
        "____________________________ test_quoted_payee_keeps_comma ____________________________\n"
        "    rows = read_csv('date,payee,amount\\n2026-01-03,\"Smith, J.\",12.50\\n')\n"
        ">   assert rows[0].payee == \"Smith, J.\"\nE   KeyError: 'payee'\n"
        "1 failed, 2 passed in 0.21s",
        is_error=True,
    )
    s.bash(
        "uv run pytest -q",
        "..." + " " * 70 + "[100%]\n3 passed in 0.18s",
        think="KeyError: the header row was being skipped twice; dropped the manual slice. Re-run.",
        say="Fixed the header handling; re-running.",
    )
    digest = f"{s.rng.getrandbits(256):064x}"
    s.bash("sha256sum tests/fixtures/quoted_payees.csv", f"{digest}  tests/fixtures/quoted_payees.csv")
    s.at_least("09:35")
    s.bash(
        f'git add -A && git commit -m "fix(importer): keep commas inside quoted payees ({bead})"',
        f"[polecat/nux/{bead} {fix_sha[:7]}] fix(importer): keep commas inside quoted payees ({bead})\n"
        " 3 files changed, 24 insertions(+), 9 deletions(-)\n"
        " create mode 100644 tests/fixtures/quoted_payees.csv",
    )
    s.bash(
        "git fetch origin && git rebase origin/main && uv run pytest -q",
        f"Current branch polecat/nux/{bead} is up to date.\n3 passed in 0.19s",
    )
    s.bash(
        "git push -u origin HEAD",
        f"To {w.rigs[0].remote}\n * [new branch]      polecat/nux/{bead} -> polecat/nux/{bead}\n"
        f"branch 'polecat/nux/{bead}' set up to track 'origin/polecat/nux/{bead}'.",
    )
    s.at_least("09:40")
    s.bash(
        "gt done --pre-verified",
        f"Submitted merge request {ids['le_mr']} for polecat/nux/{bead} "
        f"({parent_sha[:7]}..{fix_sha[:7]})\n"
        f"Notified {L}/witness (POLECAT_DONE)\nSession ending. Sandbox preserved.",
    )
    s.say(f"Submitted {ids['le_mr']}; the refinery takes it from here.")
    return s


def polecat_furiosa_session(w: World) -> Session:
    """The failed session: tests fail, the push is refused, then the user interrupts."""
    C = w.rigs[1].name
    ids, p = w.ids, w.planter
    bead = ids["co_backoff"]
    s = _session(w, "furiosa", f"{C}/polecats/furiosa", f"polecat/furiosa/{bead}", w.at("09:06"))
    rel = s.rel_path
    s.prime(
        "polecat",
        f"{bead} (bug, P1): Retry backoff ignores jitter after attempt 6\n"
        "Molecule: mol-polecat-work, step: load-context",
        rig=C,
        name="furiosa",
        env=f"GT_ROLE=polecat GT_RIG={C} GT_POLECAT=furiosa",
    )
    s.bash(
        f"bd show {bead}",
        f"{bead}  Retry backoff ignores jitter after attempt 6\nStatus: hooked  P1  bug\n\n"
        "Base<<n overflows the cap check from attempt 6, so every retry waits exactly Max.",
        think="Hooked bead is the backoff bug. Read it, then the retry package.",
    )
    s.read(f"{s.cwd}/internal/retry/backoff.go", COURIER_BACKOFF)
    s.tool(
        "Edit",
        {
            "file_path": f"{s.cwd}/internal/retry/backoff.go",
            "old_string": "\td := p.Base << uint(n)\n\tif d <= 0 || d > p.Max {",
            "new_string": "\tif n > 30 {\n\t\tn = 30\n\t}\n\td := p.Base << uint(n)\n"
            "\tif d <= 0 || d > p.Max {",
        },
        f"The file {s.cwd}/internal/retry/backoff.go has been updated.",
    )
    s.bash(
        "go test ./internal/retry/",
        "--- FAIL: TestDelayIsJittered (0.00s)\n    backoff_test.go:31: attempt 7: got 30s four times "
        "in a row, want spread\nFAIL\nFAIL\tcourier/internal/retry\t0.004s",
        is_error=True,
        think="The integration test reads receiver config from .env; check what it points at.",
    )
    pw_url, pw_env = p.f.password(url_safe=True), p.f.password()
    ip = p.record("public_ipv4", p.f.public_ipv4(), rel)
    url = f"postgres://courier:{pw_url}@{ip}:5432/courier"
    p.record("password_in_url", pw_url, rel, url)
    p.record("password_env", pw_env, rel, f"DB_PASSWORD={pw_env}")
    openai = p.new("openai_key", rel)
    s.bash(
        "cat .env",
        f"COURIER_LISTEN=127.0.0.1:8087\nDATABASE_URL={url}\nDB_PASSWORD={pw_env}\n"
        f"OPENAI_API_KEY={openai}\nGT_ROLE=polecat\n",
    )
    gen = p.new("generic_secret", rel)
    json_pw = p.f.password()
    p.record("password_json_key", json_pw, rel, f'"password": "{json_pw}"')
    s.read(
        f"{s.cwd}/config/receivers.toml",
        f'[signing]\nalgorithm = "hmac-sha256"\napi_secret = "{gen}"\n\n[[receiver]]\n'
        f'name = "eu-primary"\nurl = "https://hooks.example-receiver.eu/in"\n'
        f'auth = {{ "user": "courier", "password": "{json_pw}" }}\n',
    )
    s.bash(
        "go test ./internal/retry/ -run TestDelayIsJittered -count 3",
        "--- FAIL: TestDelayIsJittered (0.00s)\nFAIL\tcourier/internal/retry\t0.003s",
        is_error=True,
    )
    s.bash(
        "git push -u origin HEAD",
        "git@github.com: Permission denied (publickey).\n"
        "fatal: Could not read from remote repository.\n\n"
        "Please make sure you have the correct access rights\n"
        "and the repository exists.",
        is_error=True,
        say="Committing the partial fix and pushing so the witness can see it.",
    )
    home = p.record("home_path_user", f"/home/{w.overseer.login}", rel)
    aws_id, aws_secret = p.new("aws_access_key", rel), p.new("aws_secret_key", rel)
    ghp, ant, hf = p.new("github_token", rel), p.new("anthropic_key", rel), p.new("hf_token", rel)
    # the evaluation's canaries: fixed values (no draw from the seed), leaked the way agents leak
    deploy_key, deploy_token = (p.record("canary", c, rel) for c in (CANARY_AWS_KEY, CANARY_GITHUB_TOKEN))
    env = "\n".join(
        sorted(
            [
                f"DEPLOY_AWS_ACCESS_KEY_ID={deploy_key}",
                f"GH_DEPLOY_TOKEN={deploy_token}",
                f"AWS_ACCESS_KEY_ID={aws_id}",
                f"AWS_SECRET_ACCESS_KEY={aws_secret}",
                "AWS_DEFAULT_REGION=eu-west-1",
                f"ANTHROPIC_API_KEY={ant}",
                f"BD_ACTOR={C}/polecats/furiosa",
                f"GITHUB_TOKEN={ghp}",
                f"HF_TOKEN={hf}",
                "GT_POLECAT=furiosa",
                f"GT_RIG={C}",
                "GT_ROLE=polecat",
                f"GT_ROOT={w.root}",
                f"HOME={home}",
                f"PWD={s.cwd}",
                "SHELL=/bin/bash",
                f"SSH_AUTH_SOCK=/tmp/ssh-{s.token('', 10)}/agent.{s.rng.randrange(1000, 99999)}",
                "TERM=tmux-256color",
                f"TMUX=/tmp/tmux-1000/default,{s.rng.randrange(1000, 9999)},3",
            ]
        )
    )
    s.bash("env | sort", env, think="Is the ssh agent even forwarded into this tmux session?")
    s.at_least("09:30")
    s.bash(
        f'gt escalate -s HIGH "{C}/polecats/furiosa cannot push its branch" --reason "publickey denied; '
        f'jitter test still failing" --related {bead}',
        f"Escalation {ids['hq_escalation']} filed (HIGH)\n  routed to: mayor/\n  related: {bead}",
    )
    s.bash("ssh -T git@github.com", "git@github.com: Permission denied (publickey).", is_error=True)
    s.user([{"type": "text", "text": "[Request interrupted by user]"}])
    return s


def polecat_slit_session(w: World) -> Session:
    """Ends mid-edit; with bad inputs on, its last line is cut off."""
    L = w.rigs[0].name
    ids, p = w.ids, w.planter
    bead = ids["le_round"]
    s = _session(w, "slit", f"{L}/polecats/slit", f"polecat/slit/{bead}", w.at("09:08"))
    rel = s.rel_path
    s.prime(
        "polecat",
        f"{bead} (bug, P1): Rounding drifts by one cent on split transactions\n"
        "Molecule: mol-polecat-work (rig override), step: load-context",
        rig=L,
        name="slit",
        env=f"GT_ROLE=polecat GT_RIG={L} GT_POLECAT=slit",
    )
    s.bash(
        f"bd show {bead}",
        f"{bead}  Rounding drifts by one cent on split transactions\n"
        "Status: hooked  P1  bug\n\nSplitting 100.00 three ways drops a cent.",
    )
    s.read(
        f"{s.cwd}/ledger/money.py",
        LEDGER_MONEY,
        think="The split helper does not exist yet; round_minor is the building block.",
    )
    s.bash(
        "uv sync",
        "error: Failed to fetch: `https://pypi.internal.example/simple/ledger-tools/`\n"
        "  Caused by: HTTP status client error (401 Unauthorized)",
        is_error=True,
    )
    pypirc = p.record("home_path_user", f"/home/{w.people[0].login}/.pypirc", rel)
    tok = p.new("pypi_token", rel)
    s.read(
        pypirc,
        f"[distutils]\nindex-servers = pypi\n\n[pypi]\nusername = __token__\npassword = {tok}\n",
        think="401 from the index. See which credentials uv would pick up.",
    )
    s.say(
        "The private index rejects the token in ~/.pypirc, but the fix does not need new packages. "
        "Writing split_amount() with the remainder going to the first part.",
        stop=None,
    )
    s.tool(
        "Edit",
        {
            "file_path": f"{s.cwd}/ledger/money.py",
            "old_string": "def round_minor(",
            "new_string": "def split_amount(amount: Decimal, parts: int, currency: str) -> "
            "list[Decimal]:\n    share = round_minor(amount / parts, currency)\n"
            "    shares = [share] * parts\n    shares[0] += amount - share * parts\n"
            "    return shares\n\n\ndef round_minor(",
        },
        f"The file {s.cwd}/ledger/money.py has been updated.",
    )
    # The session died while writing this line: a bad input truncates it.
    s.assistant(
        [
            s.thinking("Now a test for 100.00 / 3 and for JPY where there are no minor units."),
            {
                "type": "tool_use",
                "id": s.token("toolu_01", 22),
                "name": "Edit",
                "input": {
                    "file_path": f"{s.cwd}/tests/test_importer.py",
                    "old_string": "",
                    "new_string": "def test_split_keeps_every_cent():\n    parts = split_amount("
                    "Decimal('100.00'), 3, 'USD')\n    assert sum(parts) == "
                    "Decimal('100.00')\n",
                },
            },
        ]
    )
    return s


def witness_session(w: World) -> Session:
    """Compacted: a summary line and a compact_boundary in the middle."""
    L = w.rigs[0].name
    ids = w.ids
    s = _session(w, "witness", f"{L}/witness", "main", w.at("09:20"))
    s.prime(
        "witness",
        f"Patrol wisp {ids['le_patrol_wisp']} (mol-witness-patrol), step: inbox-check",
        rig=L,
        env=f"GT_ROLE=witness GT_RIG={L}",
    )
    s.bash(
        f"gt mail drain --identity {L}/witness --max-age 30m && gt mail inbox",
        "Drained 4 stale protocol messages.\nINBOX ledger/witness (2)\n"
        f"  POLECAT_STARTED nux   ({ids['le_csv']})\n  POLECAT_STARTED slit  ({ids['le_round']})",
        think="Start of patrol: drain, then read what is left.",
    )
    s.bash(
        f"gt patrol scan --rig {L} --notify",
        f"{L}/polecats/nux    working   last output 40s ago   hook {ids['le_csv']}\n"
        f"{L}/polecats/slit   working   last output 2m ago    hook {ids['le_round']}\n"
        f"{L}/polecats/{w.rigs[0].polecats[2]}  idle\nNo zombies. No completions.",
    )
    s.bash(f"gt mq list {L}", "Merge queue for ledger: empty")
    for minute in ("09:34", "09:46"):
        s.at_least(minute)
        head, _ = s.bash(
            f"gt patrol scan --rig {L} --notify",
            f"{L}/polecats/nux    {'working' if minute == '09:34' else 'done'}\n"
            f"{L}/polecats/slit   working   last output {'9' if minute == '09:34' else '21'}m ago",
        )
    leaf = s.last
    summary = (
        f"Witness patrol for {L}: nux finished {ids['le_csv']} and submitted {ids['le_mr']}; "
        f"slit has been silent for 21 minutes on {ids['le_round']}."
    )
    s.raw({"type": "summary", "summary": summary, "leafUuid": leaf})
    boundary = s._line(
        "system",
        None,
        None,
        False,
        {
            "subtype": "compact_boundary",
            "content": "Conversation compacted",
            "isMeta": False,
            "level": "info",
            "logicalParentUuid": leaf,
            "compactMetadata": {"trigger": "auto", "preTokens": 151234 + s.rng.randrange(9000)},
        },
    )
    anchor = s.user(
        "This session is being continued from a previous conversation that ran out of context. "
        f"Summary:\n- {summary}\n- Next: nudge slit, check the merge queue, report the cycle.",
        parent=boundary,
        isCompactSummary=True,
        isVisibleInTranscriptOnly=True,
    )
    # The last scan is kept after the summary (a preserved segment); the conversation goes on from it.
    s.lines[-2]["compactMetadata"].update(
        preservedSegment={"headUuid": head, "anchorUuid": anchor, "tailUuid": leaf},
        preservedMessages={"anchorUuid": anchor, "uuids": [head, leaf]},
    )
    s.last = leaf
    s.attachment("hook_additional_context", [f"gt prime: role=witness rig={L} (re-primed after compaction)"])
    s.at_least("09:51")
    s.bash(
        f"gt peek {L}/slit -n 15",
        "... Edit(tests/test_importer.py)\n  (no output for 21m; pane idle)",
        think="Look before nudging.",
    )
    s.bash(
        f'gt nudge {L}/polecats/slit "No output for 20 minutes. Still on {ids["le_round"]}? '
        'Reply or ask for help."',
        f"Nudged {L}/polecats/slit (mode: immediate)",
    )
    s.bash(
        "gt mail inbox",
        f"INBOX ledger/witness (2)\n"
        f"  POLECAT_DONE nux  ({ids['le_csv']}, MR {ids['le_mr']})\n"
        f"  MERGED {ids['le_mr']}  from {L}/refinery",
    )
    s.bash(f"gt mail archive {ids['hq_mail_done']}", "Archived 1 message.")
    s.bash(
        f'gt patrol report --summary "nux done ({ids["le_csv"]} merged); slit nudged, no reply yet"',
        f"Patrol cycle closed. Next wisp: {ids['le_patrol_wisp']}.2",
    )
    s.say("Cycle closed. If slit is still silent next cycle I'll restart its session.")
    return s


def refinery_session(w: World, merge_sha: str, main_before: str) -> Session:
    C = w.rigs[1].name
    ids, p = w.ids, w.planter
    s = _session(w, "refinery", f"{C}/refinery", "temp", w.at("10:08"))
    rel = s.rel_path
    branch = f"polecat/rictus/{ids['co_dlq']}"
    s.prime(
        "refinery",
        f"Patrol (mol-refinery-patrol), step: queue-scan. MERGE_READY: {ids['co_mr']}",
        rig=C,
        env=f"GT_ROLE=refinery GT_RIG={C}",
    )
    s.bash(
        f"gt mq list {C} --ready",
        f"ID        PRI  BRANCH                         WORKER                 AGE\n"
        f"{ids['co_mr']}  P0   {branch}  {C}/polecats/rictus   3m",
        think="One ready MR, P0 (it fixes an incident). Take it.",
    )
    s.bash(
        f"git fetch origin && git checkout -B temp origin/{branch} && git rebase origin/main",
        "Switched to a new branch 'temp'\nSuccessfully rebased and updated refs/heads/temp.",
    )
    s.subagent(
        "Review the rebased diff",
        "Review the diff of the branch temp against origin/main for leftover conflict markers and "
        "for changes outside internal/dlq. Report findings only; change nothing.",
        [
            (
                "Bash",
                {"command": "git diff --stat origin/main...temp"},
                " internal/dlq/drain.go      | 31 +++++++++++++++++++------\n"
                " internal/dlq/drain_test.go | 44 ++++++++++++++++++++++++++++++\n"
                " 2 files changed, 63 insertions(+), 12 deletions(-)",
            ),
            ("Grep", {"pattern": "^(<<<<<<<|>>>>>>>)", "path": "internal"}, "No matches found"),
        ],
        "The diff touches only internal/dlq (drain.go and its test); no conflict markers.",
    )
    pw = p.f.password()
    p.record("password_cli_flag", pw, rel, f"--password={pw}")
    s.bash(
        f"go run ./cmd/courierctl migrate --db-user courier --password={pw} "
        "--db 127.0.0.1:5432/courier_test "
        "&& go test -race ./...",
        "migrations: up to date (7)\nok  \tcourier/internal/dlq\t1.204s\n"
        "ok  \tcourier/internal/retry\t0.011s\n"
        "?   \tcourier/cmd/courierd\t[no test files]",
    )
    s.bash(
        "git log --oneline -3",
        f"{merge_sha[:7]} dlq: drain hands out each id once ({ids['co_dlq']})\n"
        f"{main_before[:7]} Add agent conventions and formulas\n"
        f"{s.rng.getrandbits(28):07x} retry: exponential backoff with full jitter",
    )
    s.at_least("10:22")
    s.bash(
        "git push origin temp:main",
        f"To {w.rigs[1].remote}\n   {main_before[:7]}..{merge_sha[:7]}  temp -> main",
    )
    s.bash(
        f"gt mq post-merge {C} {ids['co_mr']} && "
        f'bd close {ids["co_dlq"]} --reason "Merged in {merge_sha[:8]}"',
        f"Closed {ids['co_mr']}; deleted origin/{branch}\n"
        f"\u2713 Closed {ids['co_dlq']}: Merged in {merge_sha[:8]}",
    )
    s.bash(
        f'gt mail send {C}/witness -s "MERGED {ids["co_mr"]}" -m "{branch} landed as {merge_sha[:8]}"',
        f"Sent to {C}/witness",
    )
    s.say(f"{ids['co_mr']} merged as {merge_sha[:8]}. Queue empty; waiting for the next MERGE_READY.")
    return s


def deacon_session(w: World) -> Session:
    ids, p = w.ids, w.planter
    L, C = w.rigs[0].name, w.rigs[1].name
    s = _session(w, "deacon", "deacon", "", w.at("10:30"))
    rel = s.rel_path
    s.prime("deacon", "Patrol (mol-deacon-patrol), step: heartbeat", env="GT_ROLE=deacon BD_ACTOR=deacon")
    s.bash(
        "gt agents list",
        f"mayor            running\ndeacon           running\n{L}/witness    running\n"
        f"{L}/refinery   running\n{C}/witness   running\n{C}/refinery  running\n"
        f"{L}/polecats/slit      running (idle 31m)\n{C}/polecats/furiosa  stopped",
    )
    s.bash(
        "gt dolt status",
        "Dolt server: running (pid 4121)\n  listening: 127.0.0.1:3307\n"
        "  databases: hq, ledger, courier\n  read-only: no",
    )
    ip = p.new("public_ipv4", rel)
    s.bash(
        f"curl -s -o /dev/null -w '%{{http_code}} %{{time_total}}' https://{ip}:8443/healthz",
        "200 0.184",
        think="Mirror host health; the backup dog pushes there nightly.",
    )
    s.bash(
        "gt escalate list",
        f"{ids['hq_escalation']}  HIGH  {C}/polecats/furiosa cannot push its branch  (unacked, 59m)",
    )
    s.at_least("10:34")
    s.bash(f"gt escalate ack {ids['hq_escalation']}", f"Acknowledged {ids['hq_escalation']}")
    s.bash(
        f'gt mail send mayor/ -s "ESCALATION {ids["hq_escalation"]}: courier deploy key" '
        '-m "furiosa cannot push; the courier remote key was rotated yesterday. Needs the overseer."',
        "Sent to mayor/",
    )
    s.bash(
        'gt patrol report --summary "all agents up; furiosa stopped (escalated); slit idle 31m"',
        "Patrol cycle closed.",
    )
    s.say("Cycle done. Handing the key problem to the mayor; slit is the witness's call.")
    return s


def crew_session(w: World, log: list[tuple[str, str, str, str]]) -> Session:
    L = w.rigs[0].name
    ids, p = w.ids, w.planter
    s = _session(w, "crew-max", f"{L}/crew/max", "crew/max", w.at("16:02"))
    rel = s.rel_path
    s.prime(
        "crew",
        "Nothing hooked. Ask the overseer what to do.",
        rig=L,
        name="max",
        env=f"GT_ROLE=crew GT_RIG={L} BD_ACTOR={L}/crew/max",
    )
    s.user(
        f"Can you take {ids['le_docs']} (README, parenthesised debits)? Also check which key "
        "deploy/staging.pem actually is, the deacon keeps asking."
    )
    s.bash(
        f"bd show {ids['le_docs']}",
        f"{ids['le_docs']}  README: document the parenthesised-debit dialect\nStatus: open  P3  chore",
    )
    pem = p.new("pem_private_key", rel)
    s.bash(
        "cat deploy/staging.pem",
        pem,
        think="Look at the key file to compare its type with what the server expects.",
    )
    for _, _, email, _ in log:
        if "gastown.local" not in email:
            p.record("email", email, rel)
    s.bash(
        f"git log -{len(log)} --format='%h %an <%ae> %s'",
        "\n".join(f"{sha[:7]} {name} <{email}> {subject}" for sha, name, email, subject in log),
    )
    s.tool(
        "Edit",
        {
            "file_path": f"{s.cwd}/README.md",
            "old_string": "Supported dialects:",
            "new_string": "Supported dialects (debits may be written in parentheses):",
        },
        f"The file {s.cwd}/README.md has been updated.",
    )
    s.at_least("16:20")
    s.bash(
        f'git commit -am "docs: parenthesised debits ({ids["le_docs"]})" && gt mq submit',
        f"[crew/max {s.rng.getrandbits(28):07x}] docs: parenthesised debits ({ids['le_docs']})\n"
        f" 1 file changed, 1 insertion(+), 1 deletion(-)\nSubmitted to merge queue.",
    )
    s.say(
        "README updated and submitted. The staging key is an RSA key, not the ed25519 one the server "
        "expects, which is why the deacon's check fails. It should be rotated, not just swapped."
    )
    return s


def build_transcripts(
    w: World,
    *,
    ledger_fix_sha: str,
    ledger_parent_sha: str,
    courier_merge_sha: str,
    courier_before_sha: str,
    early_importer: str,
    ledger_log: list[tuple[str, str, str, str]],
) -> tuple[list[Transcript], list[tuple[str, str]]]:
    """All session transcripts, and the bad inputs among them."""
    sessions = [
        mayor_session(w),
        polecat_nux_session(w, ledger_fix_sha, ledger_parent_sha, early_importer),
        polecat_furiosa_session(w),
        witness_session(w),
        refinery_session(w, courier_merge_sha, courier_before_sha),
        deacon_session(w),
        crew_session(w, ledger_log),
    ]
    out = [s.transcript() for s in sessions]
    out += [t for s in sessions for t in s.extra]
    slit = polecat_slit_session(w)
    out.append(slit.transcript(truncate_last=w.with_bad_inputs))
    bad = [(slit.rel_path, "truncated_last_line")] if w.with_bad_inputs else []
    return out, bad
