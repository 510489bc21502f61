"""One swarm peer from a JSON spec, without settings or Dagster: `python -m gastown_ft.swarm.worker SPEC`.

For the benchmark and the multi-process tests, which start peers on loopback. The spec names the base
model directory, the train/validation examples (a JSON file), the [training] and [swarm] settings,
the run id, the key file, the role and where to write the adapter; the peer prints one JSON line per
event on stdout (`listening`, `step`, `done`), so a parent can follow it.

With `initial_peers_file` the peer gets ready (imports, tokenized data) and then waits for that file
(a JSON list of multiaddrs) before it joins: a parent can start it early and let it join the moment it
wants, without paying the start-up then.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from gastown_ft.config import SwarmConfig, TrainingConfig
from gastown_ft.errors import GastownFTError


def _emit(event: str, **data) -> None:
    sys.stdout.write(json.dumps({"event": event, **data}) + "\n")
    sys.stdout.flush()


def run(spec: dict) -> int:
    from gastown_ft.swarm.keys import load_key
    from gastown_ft.swarm.trainer import make_manifest, train_swarm
    from gastown_ft.training.base_model import model_fingerprint
    from gastown_ft.training.lora import plan_training

    data = json.loads(Path(spec["examples"]).read_text(encoding="utf-8"))
    tcfg = TrainingConfig.model_validate(spec["training"])
    scfg = SwarmConfig.model_validate(spec["swarm"])
    plan = plan_training(spec["base_model"], data["train"], data["validation"], tcfg)
    manifest = make_manifest(
        plan,
        scfg,
        spec["run_id"],
        data.get("corpus_version", "spec"),
        model_fingerprint(Path(spec["base_model"])),
    )
    initial_peers = list(spec.get("initial_peers") or [])
    if spec.get("initial_peers_file"):
        import hivemind.optim  # noqa: F401  (imported now, not after the go)

        _emit("standing_by")
        initial_peers = _wait_for_peers_file(Path(spec["initial_peers_file"]))
    result = train_swarm(
        plan,
        spec["out_dir"],
        scfg,
        key=load_key(spec["key_file"]),
        manifest=manifest,
        first=bool(spec["first"]),
        initial_peers=initial_peers,
        on_listening=lambda maddrs: _emit("listening", maddrs=maddrs),
        progress=lambda ev: _emit("step", **ev),
        log=lambda msg: _emit("log", message=msg),
    )
    _emit(
        "done",
        status=result.train.status,
        adapter_dir=str(result.train.adapter_dir) if result.train.adapter_dir else None,
        steps=result.train.steps_done,
        val_loss=result.train.val_loss,
        swarm=result.swarm.to_dict(),
    )
    return 0 if result.train.status == "completed" else 1


def _wait_for_peers_file(path: Path, timeout_s: float = 600.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while not path.exists():  # the parent writes it in one rename
        if time.monotonic() >= deadline:
            raise GastownFTError(f"no {path} after {timeout_s:.0f} s")
        time.sleep(0.1)
    return list(json.loads(path.read_text(encoding="utf-8")))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        return run(spec)
    except GastownFTError as e:
        _emit("error", message=str(e))
        return 2


if __name__ == "__main__":
    sys.exit(main())
