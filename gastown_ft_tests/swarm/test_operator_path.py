"""The operator's path, end to end: a Dagster materialization of `lora_adapter` with the hivemind
backend is the first peer; a second machine (here: a second directory and process) joins with the
`gastown-ft peer join` command the first one logged; a third one, with another corpus, is refused."""

from __future__ import annotations

import shlex
import shutil
import time

import pyarrow.parquet as pq
import pytest
from safetensors.torch import load_file

from gastown_ft_tests.swarm.peers import Command, leftover_processes

pytestmark = [pytest.mark.swarm, pytest.mark.slow, pytest.mark.timeout(420)]

JOIN_LINE = r"gastown-ft peer join --run-id \S+(?: --initial-peers \S+)+"


def _machine(root, settings, *, key_file, trim_train: int = 0):
    """A copy of the tiny town's materialized corpus splits and base model with its own config: what a
    second machine has after materializing the same town data (or, with `trim_train`, other data)."""
    from gastown_ft.config import (
        ArtifactsConfig,
        DagsterConfig,
        SwarmConfig,
        load_settings,
        render_settings_toml,
    )

    src = settings.artifacts.dir
    for part in ("corpus/splits", "models/embedded"):
        shutil.copytree(src / part, root / "artifacts" / part)
    if trim_train:
        train = root / "artifacts" / "corpus/splits/data/train.parquet"
        table = pq.read_table(train)
        # The first rows: the last ones may be long sessions that max_seq_len drops anyway.
        pq.write_table(table.slice(trim_train), train)
    cfg = settings.model_copy(
        update={
            "artifacts": ArtifactsConfig(dir=root / "artifacts"),
            "dagster": DagsterConfig(home=root / "dagster"),
            # Few steps; one thread per peer, as the two peers share this machine's cores.
            "training": settings.training.model_copy(
                update={"backend": "hivemind", "max_steps": 4, "threads": 1, "checkpoint_every": 4}
            ),
            "swarm": SwarmConfig(
                key_file=key_file,
                listen_host="127.0.0.1",
                listen_port=0,
                min_peers=2,
                target_batch_size=16,  # 4 micro-batches a step, gathered by both peers
                start_timeout_s=120,
                join_timeout_s=60,
                matchmaking_time=1.0,
                averaging_timeout=10.0,
                next_chunk_timeout=5.0,
                request_timeout=0.5,
            ),
        }
    )
    path = root / "gastown-ft.toml"
    path.write_text(render_settings_toml(cfg))
    return load_settings(path)


def test_dagster_run_is_the_first_peer_a_second_machine_joins_and_another_corpus_is_refused(
    tiny_trained, tmp_path
):
    from dagster import AssetKey, DagsterInstance

    from gastown_ft.swarm.keys import generate_key_file

    settings = tiny_trained[0]
    key = generate_key_file(tmp_path / "swarm.key")
    first = _machine(tmp_path / "first", settings, key_file=tmp_path / "swarm.key")
    # The other machines have no key file: the key comes from the environment instead.
    joiner = _machine(tmp_path / "joiner", settings, key_file=tmp_path / "absent.key")
    other = _machine(tmp_path / "other", settings, key_file=tmp_path / "absent.key", trim_train=3)
    key_env = {"GASTOWN_FT_SWARM_KEY": key.secret.hex()}

    commands: list[Command] = []
    try:
        dagster_run = Command(["--config", str(first.config_path), "materialize", "-s", "lora_adapter"])
        commands.append(dagster_run)
        join_args = shlex.split(dagster_run.wait_for_output(JOIN_LINE, timeout=180).group(0))[1:]
        refused = Command(["--config", str(other.config_path), *join_args], env=key_env)
        peer = Command(["--config", str(joiner.config_path), *join_args, "--json"], env=key_env)
        commands += [refused, peer]

        assert refused.wait(timeout=180) == 2, refused.output
        assert "Traceback" not in refused.output
        errors = [i for i, line in enumerate(refused.stderr) if line.startswith("error: ")]
        assert len(errors) == 1, refused.output
        error, hint = refused.stderr[errors[0]], refused.stderr[errors[0] + 1]
        # One line naming what differs (the corpus, hence the plan; not the base model), then the fix.
        assert error.startswith("error: this machine cannot join run "), error
        assert "corpus version (this machine " in error and "training plan" in error
        assert "base model" not in error
        assert hint.startswith("  hint: materialize corpus_splits"), hint

        assert peer.wait(timeout=240) == 0, peer.output
        assert dagster_run.wait(timeout=120) == 0, dagster_run.output
    finally:
        for c in commands:
            c.stop()
    pgids = [c.pgid for c in commands]
    deadline = time.monotonic() + 10
    while (left := leftover_processes(pgids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left after the peers stopped: {left}"

    # The asset: trained by two peers, what a round sends, an adapter like any other.
    import json

    instance = DagsterInstance.from_config(str(first.dagster.home))
    event = instance.get_latest_materialization_event(AssetKey("lora_adapter"))
    meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert meta["swarm_members"] == 2 and meta["swarm_largest_group"] == 2
    assert meta["swarm_averaged_rounds"] >= 2 and meta["steps"] == 4
    assert 0 < meta["swarm_bytes_per_round"] < meta["swarm_full_model_bytes"] / 5
    assert meta["swarm_sent_bytes_per_round"] == meta["swarm_bytes_per_round"]  # 2(n-1)/n x, n = 2
    assert meta["provenance"]["backend"] == "hivemind"
    assert meta["val_loss_final"] < meta["val_loss_first"]

    stdout = "\n".join(peer.stdout)
    joined = json.loads(stdout[stdout.rindex("\n{") :])
    assert joined["status"] == "completed" and joined["steps"] == 4
    assert joined["swarm"]["largest_group"] == 2
    assert joined["swarm"]["samples"] > 0 and meta["swarm_samples_here"] > 0  # both peers trained
    assert joined["swarm"]["run_id"] == meta["swarm_run_id"]
    ours = load_file(f"{meta['path']}/adapter_model.safetensors")
    theirs = load_file(f"{joined['adapter_dir']}/adapter_model.safetensors")
    assert ours.keys() == theirs.keys()
    assert max(float((ours[k] - theirs[k]).abs().max()) for k in ours) < 1e-2  # one averaged adapter
    assert any(float(v.abs().max()) > 0 for k, v in ours.items() if "lora_B" in k)  # it did train
