"""The town reporter of one Dagster run: feed events, the run's bead, mail.

State that the steps of a run share (they may run in separate processes) lives in files:
- `<artifacts>/town/runs/<run id>.json`: the run's bead and what each stage reported;
- `<artifacts>/town/pending_training.json`: the bead of a training that has not finished (failed, or
  cut off); the next training run takes it over, so one training, however many attempts, is one bead;
- `<training run dir>/town.json`: the bead of a trained adapter, which a later evaluation or export
  of that adapter reports to.
Nothing here raises into the pipeline: every failure is a warning and an outbox record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gastown_ft import atomic
from gastown_ft.config import Settings
from gastown_ft.town import run_bead
from gastown_ft.town.clis import TownCLI
from gastown_ft.town.feed import append_event, events_path, make_event
from gastown_ft.town.outbox import OUTBOX_DIR, Outbox

RUNS_DIR = "runs"
PENDING_FILE = "pending_training.json"
ADAPTER_TOWN_FILE = "town.json"
OUTBOX_BEAD = "outbox:"  # the "id" of a bead that went to the outbox instead of bd


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic.write_json(path, data, indent=2, default=str)


def adapter_bead(adapter_dir: str | os.PathLike | None) -> dict[str, Any]:
    """{bead, closed, run_id} recorded beside a trained adapter ({} when none)."""
    if not adapter_dir:
        return {}
    return read_json(Path(adapter_dir).parent / ADAPTER_TOWN_FILE)


def with_town_bead(manifest: dict[str, Any], adapter_dir: str | os.PathLike | None) -> dict[str, Any]:
    """A registry manifest with the bead of the training that made the adapter, when there is one."""
    bead = adapter_bead(adapter_dir).get("bead")
    return {**manifest, "town_bead": bead} if bead else manifest


def bead_ref(bead: str) -> str:
    """How a command line names a bead; one that only exists in the outbox gets a placeholder."""
    return f"<bead {bead[len(OUTBOX_BEAD) :]}>" if bead.startswith(OUTBOX_BEAD) else bead


class TownReporter:
    def __init__(self, settings: Settings, run_id: str, warn: Callable[[str], Any] | None = None) -> None:
        self.cfg = settings.town_reporting
        self.root = Path(settings.town.root)
        self.run_id = run_id
        self.warn = warn or (lambda _m: None)
        town_dir = Path(settings.artifacts.dir) / OUTBOX_DIR
        self.outbox = Outbox(settings.artifacts.dir)
        self.cli = TownCLI(self.cfg, self.outbox, self.warn)
        self.state_path = town_dir / RUNS_DIR / f"{run_id}.json"
        self.pending_path = town_dir / PENDING_FILE
        self.bd_dir = run_bead.beads_dir(self.root, self.cfg.rig)

    # --- shared state ------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return read_json(self.state_path)

    def update_state(self, **changes: Any) -> dict[str, Any]:
        state = {**self.state(), **changes}
        write_json(self.state_path, state)
        return state

    def record_stage(self, stage: str, status: str, line: str, figures: dict[str, Any] | None = None) -> None:
        state = self.state()
        stages = state.get("stages") or {}
        stages[stage] = {"status": status, "line": line, "figures": figures or {}}
        self.update_state(stages=stages)

    # --- the feed ----------------------------------------------------------------------------------

    def event(self, type_: str, payload: dict[str, Any], visibility: str = "feed") -> None:
        payload = {k: v for k, v in {"run": self.run_id[:8], **payload}.items() if v is not None}
        ev = make_event(type_, self.cfg.actor, payload, visibility)
        path = events_path(self.root)
        try:
            if not self.root.is_dir():
                raise FileNotFoundError(f"the town root {self.root} does not exist")
            append_event(path, ev)
        except OSError as e:
            why = f"cannot append to {path}: {e}"
            self.warn(f"town reporting: {why}")
            self.outbox.add({"kind": "feed", "event": ev, "why": why})

    # --- the run's bead ----------------------------------------------------------------------------

    @property
    def bead(self) -> str | None:
        return self.state().get("bead")

    def _bd(self, args: list[str], kind: str) -> bool:
        return self.cli.run("bd", args, self.bd_dir, kind, run=self.run_id).ok

    def open_training_bead(self, title: str, description: str) -> str:
        """The run's bead: the one it has, a pending training's, or a new one; set in progress."""
        bead = self.bead
        if bead:
            return bead
        pending = read_json(self.pending_path).get("bead")
        if pending:
            bead = pending
            self.comment(f"resumed by run {self.run_id[:8]}", bead=bead)
        else:
            sent = self.cli.run(
                "bd",
                run_bead.create_args(title, description, self.cfg.labels, self.cfg.actor),
                self.bd_dir,
                "bead_create",
                run=self.run_id,
            )
            created = run_bead.parse_created_id(sent.stdout) if sent.ok else None
            if sent.ok and created is None:
                self.warn(f"town reporting: bd create answered without an id: {sent.stdout[:200]!r}")
            bead = created or f"{OUTBOX_BEAD}run-{self.run_id[:8]}"
        self.update_state(bead=bead)
        write_json(self.pending_path, {"bead": bead, "run_id": self.run_id})
        self.set_status("in_progress")
        return bead

    def use_bead(self, bead: str) -> None:
        self.update_state(bead=bead)

    def comment(self, text: str, bead: str | None = None) -> None:
        bead = bead or self.bead
        if bead:
            self._bd(run_bead.comment_args(bead_ref(bead), text, self.cfg.actor), "bead_comment")

    def set_status(self, status: str) -> None:
        if self.bead:
            self._bd(run_bead.status_args(bead_ref(self.bead), status, self.cfg.actor), "bead_status")

    def close(self, reason: str) -> None:
        bead = self.bead
        if not bead:
            return
        self._bd(run_bead.close_args(bead_ref(bead), reason, self.cfg.actor), "bead_close")
        self.update_state(closed=True)
        if read_json(self.pending_path).get("bead") == bead:
            self.pending_path.unlink(missing_ok=True)
        adapter = self.state().get("adapter_dir")
        if adapter and adapter_bead(adapter).get("bead") == bead:
            write_json(Path(adapter).parent / ADAPTER_TOWN_FILE, {**adapter_bead(adapter), "closed": True})

    def attach_adapter(self, adapter_dir: str) -> None:
        """The training finished: its bead now belongs to the adapter (no longer pending)."""
        bead = self.bead
        self.update_state(adapter_dir=adapter_dir)
        if not bead:
            return
        write_json(
            Path(adapter_dir).parent / ADAPTER_TOWN_FILE,
            {"bead": bead, "closed": False, "run_id": self.run_id},
        )
        if read_json(self.pending_path).get("bead") == bead:
            self.pending_path.unlink(missing_ok=True)

    # --- mail --------------------------------------------------------------------------------------

    def mail(self, subject: str, body: str) -> None:
        if not self.cfg.mail_to:
            return
        args = ["mail", "send", self.cfg.mail_to, "-s", subject, "-m", body]
        self.cli.run("gt", args, self.root, "mail", run=self.run_id)
        self.update_state(mailed=subject)
