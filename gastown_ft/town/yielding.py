"""Training yields to the town: it pauses between optimizer steps while the box is busy, and resumes
by itself.

`[training.yield_when]` (YieldConfig) names the conditions: available memory below a floor, the load
of other work above a ceiling, or a flag file an operator can `touch`. The trainer asks `should_stop`
between steps (read at most every check_every_s); when a condition holds it saves a checkpoint and
returns, which frees the model's memory for the town. `YieldGuard.run` then waits until every
condition has been clear for resume_after_s and starts the trainer again, which resumes from that
checkpoint: the same batches and updates as a run that never paused (see training/lora.py).
Pauses and resumes go to the run log, the asset's metadata and, with town reporting on, the feed.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gastown_ft.config import Settings, YieldConfig
from gastown_ft.town.summaries import duration


@dataclass(frozen=True)
class BoxReading:
    available_mb: float | None
    load_1m: float | None
    cpus: int
    flag: bool


def read_box(flag_file: Path | None) -> BoxReading:
    """This box now: available memory, 1-minute load average, cores, and the flag file."""
    from gastown_ft.training.estimate import available_memory_bytes  # (the cgroup's limit included)

    try:
        available = available_memory_bytes() / 2**20
    except Exception:  # noqa: BLE001 (no /proc and no psutil: no memory condition)
        available = None
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return BoxReading(available, load, os.cpu_count() or 1, bool(flag_file and flag_file.exists()))


def flag_path(cfg: YieldConfig, settings: Settings | None = None) -> Path | None:
    """The flag file, relative to the config file's directory (else the working directory)."""
    if not cfg.flag_file:
        return None
    path = Path(os.path.expanduser(cfg.flag_file))
    if path.is_absolute():
        return path
    base = settings.config_path.parent if settings is not None and settings.config_path else Path.cwd()
    return base / path


class YieldGuard:
    def __init__(
        self,
        cfg: YieldConfig,
        flag_file: Path | None = None,
        own_threads: int = 1,
        *,
        read: Callable[[Path | None], BoxReading] = read_box,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = time.sleep,
        log: Callable[[str], Any] = print,
        notify: Callable[..., Any] | None = None,
    ) -> None:
        self.cfg, self.flag_file, self.own_threads = cfg, flag_file, own_threads
        self.read, self.clock, self.sleep, self.log = read, clock, sleep, log
        self.notify = notify or (lambda *_a, **_k: None)
        self.pauses: list[dict[str, Any]] = []
        self.reason: str | None = None  # why the trainer was asked to stop
        self._last_look = float("-inf")

    @classmethod
    def for_training(
        cls, settings: Settings, own_threads: int, log: Callable[[str], Any] = print
    ) -> YieldGuard:
        """The guard `[training.yield_when]` asks for; lowers this process's priority when it says so."""
        cfg = settings.training.yield_when
        if cfg.lower_priority:
            from gastown_ft.town.priority import lower_priority

            set_to = lower_priority()
            log(f"training at lower priority so the town comes first: {set_to}")
        return cls(cfg, flag_path(cfg, settings), own_threads, log=log, notify=_town_note)

    def busy(self, r: BoxReading, training: bool) -> str | None:
        """Why the box is too busy to train now (None: it is not). While training, the load the
        training itself makes (its threads) does not count."""
        why = []
        floor = self.cfg.min_available_mb
        if floor and r.available_mb is not None and r.available_mb < floor:
            why.append(f"available memory {r.available_mb:,.0f} MB is below the floor of {floor:,} MB")
        ceiling = self.cfg.max_load_per_cpu
        if ceiling and r.load_1m is not None:
            others = max(0.0, r.load_1m - (self.own_threads if training else 0)) / max(1, r.cpus)
            if others > ceiling:
                why.append(
                    f"the load of other work is {others:.2f} per core, above the ceiling of {ceiling:g}"
                )
        if r.flag:
            why.append(f"the flag file {self.flag_file} exists")
        return "; ".join(why) or None

    def should_stop(self) -> bool:
        """Asked by the trainer between steps: True asks it to checkpoint and return."""
        now = self.clock()
        if now - self._last_look < self.cfg.check_every_s:
            return False
        self._last_look = now
        self.reason = self.busy(self.read(self.flag_file), training=True)
        return self.reason is not None

    def wait_until_clear(self) -> float:
        """Block until every condition has been clear for resume_after_s; returns the seconds waited."""
        started = self.clock()
        clear_since: float | None = None
        while True:
            now = self.clock()
            if self.busy(self.read(self.flag_file), training=False) is None:
                clear_since = now if clear_since is None else clear_since
                if now - clear_since >= self.cfg.resume_after_s:
                    return now - started
            else:
                clear_since = None
            self.sleep(self.cfg.check_every_s)

    def run(self, train: Callable[[Callable[[], bool]], Any]) -> Any:
        """Train (`train(should_stop)` returns a TrainResult), pausing and resuming as the box asks."""
        wall = 0.0
        while True:
            self.reason = None
            self._last_look = float("-inf")
            result = train(self.should_stop)
            wall += result.wall_seconds
            if result.status != "cancelled" or self.reason is None:  # done, or stopped for another reason
                return dataclasses.replace(result, wall_seconds=wall) if self.pauses else result
            at = f"step {result.steps_done}/{result.total_steps}"
            self.log(
                f"training paused at {at}: {self.reason}; checkpoint {result.last_checkpoint}; "
                "it resumes by itself once the box is free"
            )
            self.notify("ft_paused", f"paused at {at}: {self.reason}", step=result.steps_done)
            result = None  # (the trainer's model goes with it: the town gets the memory back)
            waited = self.wait_until_clear()
            self.pauses.append({"reason": self.reason, "seconds": round(waited, 1), "at": at})
            self.log(f"training resumed after a pause of {duration(waited)}")
            self.notify("ft_resumed", f"resumed after a pause of {duration(waited)}")

    def metadata(self) -> dict[str, Any]:
        return {
            "yield_pauses": len(self.pauses),
            "yield_paused_seconds": round(sum(p["seconds"] for p in self.pauses), 1),
            "yield_log": self.pauses,
        }

    def dagster_metadata(self) -> dict[str, Any]:
        """`metadata()` as the asset's Dagster metadata values."""
        from dagster import MetadataValue

        m = self.metadata()
        return {
            "yield_pauses": MetadataValue.int(m["yield_pauses"]),
            "yield_paused_seconds": MetadataValue.float(float(m["yield_paused_seconds"])),
            "yield_log": MetadataValue.json(m["yield_log"]),
        }


def _town_note(type_: str, message: str, **payload: Any) -> None:
    """The pause or resume as a town feed event and a bead comment, when town reporting is on."""
    from gastown_ft.town.hooks import current_stage

    stage = current_stage()
    if stage is not None:
        stage.note(type_, message, **payload)
