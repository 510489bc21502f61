"""Swarm peers on loopback for the tests and the benchmark: a tiny model, a key, worker processes.

Each peer is `python -m gastown_ft.swarm.worker` in its own process group (its p2pd daemon and
averager processes included), so `stop` can end all of it, and `leftover_processes` can show leaks.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

LOOPBACK_SWARM = dict(
    listen_host="127.0.0.1",
    listen_port=0,
    start_timeout_s=90,
    join_timeout_s=30,
    matchmaking_time=1.0,
    averaging_timeout=6.0,
    next_chunk_timeout=2.0,
    request_timeout=0.5,
    peer_expiration_s=8.0,
    target_batch_size=16,
)

TINY_TRAINING = dict(
    lora_rank=4,
    lora_alpha=8,
    lora_dropout=0.0,
    learning_rate=5e-3,
    batch_size=4,
    max_seq_len=320,
    max_steps=8,
    threads=1,  # peers share the cores; one thread each keeps OpenMP from thrashing
    seed=3,
)


def write_examples(path: Path, train: list[dict], validation: list[dict], corpus_version: str) -> Path:
    path.write_text(json.dumps({"train": train, "validation": validation, "corpus_version": corpus_version}))
    return path


class Peer:
    def __init__(self, name: str, spec: dict, spec_dir: Path) -> None:
        self.name = name
        spec_path = spec_dir / f"{name}.json"
        spec_path.write_text(json.dumps(spec))
        self.events: queue.Queue = queue.Queue()
        self.history: list[dict] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gastown_ft.swarm.worker", str(spec_path)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=open(spec_dir / f"{name}.log", "w"),  # noqa: SIM115  (closed with the process)
            text=True,
            env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1"),
            start_new_session=True,  # its own process group: p2pd and averagers die with it
        )
        self.pgid = self.proc.pid
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            ev["at"] = time.monotonic()  # when it arrived, for timelines
            self.events.put(ev)

    def wait_for(self, predicate, timeout: float) -> dict:
        """The first event (seen already or to come) matching `predicate`."""
        for ev in self.history:
            if predicate(ev):
                return ev
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"peer {self.name}: no matching event in {timeout} s; saw {self.history[-3:]}"
                )
            try:
                ev = self.events.get(timeout=min(left, 1.0))
            except queue.Empty:
                if self.proc.poll() is not None and self.events.empty():
                    raise RuntimeError(
                        f"peer {self.name} exited {self.proc.returncode}; saw {self.history[-3:]}"
                    ) from None
                continue
            self.history.append(ev)
            if predicate(ev):
                return ev

    def maddrs(self, timeout: float = 60) -> list[str]:
        return self.wait_for(lambda ev: ev.get("event") == "listening", timeout)["maddrs"]

    def outcome(self, timeout: float) -> dict:
        """The `done` or `error` event."""
        return self.wait_for(lambda ev: ev.get("event") in ("done", "error"), timeout)

    def kill(self) -> None:
        """SIGKILL the whole peer: no goodbye to the swarm, as in a crash or a pulled cable."""
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.pgid, signal.SIGTERM)
                self.proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.pgid, signal.SIGKILL)  # stragglers of the group (p2pd, averagers)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)


class Command:
    """A `gastown-ft` command line in its own process group, its stdout and stderr followed line by line."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []  # both streams, in arrival order
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "gastown-ft"), *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "HF_HUB_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1",
                "COLUMNS": "400",
                **(env or {}),
            },
            start_new_session=True,
        )
        self.pgid = self.proc.pid
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for t in self._pumps:
            t.start()

    def _pump(self, stream, own: list[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                own.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for_output(self, pattern: str, timeout: float):
        """The first match of the regex `pattern` in the output so far or to come."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = re.search(pattern, "\n".join(self.lines))
                if found:
                    return found
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._pumps):
                    raise RuntimeError(f"exited {self.proc.returncode} before {pattern!r}:\n{self.output}")
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"no {pattern!r} in {timeout} s:\n{self.output[-4000:]}")
                self._changed.wait(timeout=1.0)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        for t in self._pumps:
            t.join(timeout=10)
        return code

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):  # the group: p2pd and averagers too
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


class Swarm:
    """Starts peers for one test and always ends every one of them."""

    def __init__(self, work: Path, base_model: Path, key_file: Path) -> None:
        self.work, self.base_model, self.key_file = work, base_model, key_file
        self.peers: list[Peer] = []

    def start(
        self,
        name: str,
        *,
        run_id: str,
        examples: Path,
        first: bool,
        initial_peers: list[str] | None = None,
        initial_peers_file: Path | None = None,
        training: dict | None = None,
        swarm: dict | None = None,
        key_file: Path | None = None,
    ) -> Peer:
        """A peer; with `initial_peers_file` it gets ready and joins once `release` writes that file."""
        spec = {
            "base_model": str(self.base_model),
            "examples": str(examples),
            "training": {**TINY_TRAINING, **(training or {})},
            "swarm": {**LOOPBACK_SWARM, **(swarm or {})},
            "run_id": run_id,
            "key_file": str(key_file or self.key_file),
            "first": first,
            "initial_peers": initial_peers or [],
            "initial_peers_file": str(initial_peers_file) if initial_peers_file else None,
            "out_dir": str(self.work / name),
        }
        peer = Peer(name, spec, self.work)
        self.peers.append(peer)
        return peer

    @staticmethod
    def release(initial_peers_file: Path, maddrs: list[str]) -> None:
        """Let the peers standing by on this file join, with these addresses."""
        staged = initial_peers_file.with_suffix(".tmp")
        staged.write_text(json.dumps(maddrs))
        staged.rename(initial_peers_file)

    def stop_all(self) -> None:
        for peer in self.peers:
            peer.stop()


def leftover_processes(pgids: list[int]) -> list[str]:
    """Processes still alive in these process groups ("pid name")."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        state, pgid = fields[0], int(fields[2])
        if pgid in pgids and state != "Z":
            out.append(f"{entry.name} {name}")
    return out


def descendant_p2pd() -> list[int]:
    """p2pd daemons below this process (in-process DHTs run p2pd under a forked child)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        parents[int(entry.name)] = int(fields[1])
        names[int(entry.name)] = stat[stat.index("(") + 1 : stat.rindex(")")]
    me, out = os.getpid(), []
    for pid, name in names.items():
        if name != "p2pd":
            continue
        p = parents.get(pid)
        while p and p != me:
            p = parents.get(p)
        if p == me:
            out.append(pid)
    return out
