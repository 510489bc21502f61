"""From settings to a swarm peer: the first peer (the Dagster `lora_adapter` run) and a joining one.

A joining machine computes its own training plan from its own materialized corpus splits and base
model, so the manifest check compares what it would really train on.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gastown_ft.artifacts import ArtifactStore
from gastown_ft.config import Settings
from gastown_ft.swarm.keys import load_key
from gastown_ft.swarm.trainer import SwarmResult, make_manifest, train_swarm


def _resolve(settings: Settings, path: Path | None) -> Path | None:
    if path is None:
        return None
    path = path.expanduser()
    if path.is_absolute():
        return path
    base = settings.config_path.parent if settings.config_path else Path.cwd()
    return (base / path).resolve()


def key_path(settings: Settings) -> Path:
    return _resolve(settings, settings.swarm.key_file)


def default_run_id(plan_fingerprint: str, job_run_id: str) -> str:
    """One run id per job: two jobs at once never share one, even on the same plan."""
    return f"gft-{plan_fingerprint[:10]}-{job_run_id.replace('-', '')[:8]}"


def join_command(run_id: str, maddrs: list[str]) -> str:
    peers = " ".join(f"--initial-peers {shlex.quote(m)}" for m in maddrs)
    return f"gastown-ft peer join --run-id {run_id} {peers}"


def run_first_peer(
    settings: Settings,
    plan,
    base_model_fp: str,
    corpus_version: str,
    out_dir: Path,
    job_run_id: str,
    *,
    log: Callable[[str], None],
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SwarmResult:
    cfg = settings.swarm
    run_id = cfg.run_id or default_run_id(plan.fingerprint, job_run_id)
    manifest = make_manifest(plan, cfg, run_id, corpus_version, base_model_fp)

    def listening(maddrs: list[str]) -> None:
        log(
            f"swarm run {run_id} is open; on each other machine (same corpus, base model, settings and "
            f"swarm key) run:\n  {join_command(run_id, maddrs)}\n"
            f"waiting for {cfg.min_peers} peer(s) in all, at most {cfg.start_timeout_s:.0f} s"
        )

    return train_swarm(
        plan,
        out_dir,
        cfg,
        key=load_key(key_path(settings)),
        manifest=manifest,
        first=True,
        identity_file=_resolve(settings, cfg.identity_file),
        on_listening=listening,
        progress=progress,
        should_stop=should_stop,
        log=log,
    )


def join_run(
    settings: Settings,
    run_id: str,
    initial_peers: list[str],
    *,
    log: Callable[[str], None],
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SwarmResult:
    from gastown_ft.training.base_model import model_fingerprint
    from gastown_ft.training.inputs import plan_for

    store = ArtifactStore(settings.artifacts.dir)
    plan, resolved, corpus_version = plan_for(settings, store)
    cfg = settings.swarm
    manifest = make_manifest(plan, cfg, run_id, corpus_version, model_fingerprint(resolved.path))
    out_dir = store.swarm_run_dir(run_id)
    return train_swarm(
        plan,
        out_dir,
        cfg,
        key=load_key(key_path(settings)),
        manifest=manifest,
        first=False,
        initial_peers=list(initial_peers) or list(cfg.initial_peers),
        identity_file=_resolve(settings, cfg.identity_file),
        on_listening=lambda maddrs: log("this peer listens on " + ", ".join(maddrs)),
        progress=progress,
        should_stop=should_stop,
        log=log,
    )
