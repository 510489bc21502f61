"""The Dolt beads sensor against a real Dagster instance and a MySQL-protocol server: baseline, quiet
ticks, a run requested when a Dolt commit lands (`dolt_log`) or rows change (the updated_at
watermark), and an unreachable server or a JSONL town never crashing a tick."""

from __future__ import annotations

import secrets

import pytest
from dagster import DagsterInstance, build_sensor_context

from gastown_ft.config import Settings, render_settings_toml
from gastown_ft.definitions import defs
from gastown_ft.resources import GastownSettings
from gastown_ft.sensors.common import REASON_TAG, RIGS_TAG, TRIGGER_TAG
from gastown_ft_tests.dolt.conftest import PASSWORD_ENV, backup_rows, execute, load_backup
from gastown_ft_tests.pgcluster import free_port

pytestmark = [pytest.mark.mariadb, pytest.mark.shared]

CORPUS_STAGES = ["corpus_splits", "instruction_pairs", "quarantine", "scrubbed_documents"]
# Dolt's `dolt_log` system table lists commits newest first; on MariaDB a view over a commit table
# plays it.
DOLT_LOG = (
    "CREATE TABLE commit_graph (seq INT AUTO_INCREMENT PRIMARY KEY, commit_hash CHAR(32) NOT NULL, "
    "date DATETIME(3) NOT NULL, message TEXT NOT NULL)",
    "CREATE VIEW dolt_log AS SELECT commit_hash, date, message FROM commit_graph ORDER BY seq DESC",
)


def commit(info, database: str, message: str) -> str:
    sha = secrets.token_hex(16)
    execute(
        info,
        database,
        f"INSERT INTO commit_graph (commit_hash, date, message) VALUES ('{sha}', NOW(3), '{message}')",
    )
    return sha


def write_config(path, town_root, info, port=None, **town) -> str:
    cfg = Settings.model_validate(
        {
            "town": {
                "root": str(town_root),
                "claude_projects_dir": str(town_root / "no-projects"),
                "dolt": {
                    "host": info.host,
                    "port": port or info.port,
                    "user": info.user,
                    "password_env": PASSWORD_ENV,
                    "connect_timeout_s": 2,
                },
                **town,
            },
            "artifacts": {"dir": str(path.parent / "artifacts")},
            "dagster": {"home": str(path.parent / "dagster")},
        }
    )
    path.write_text(render_settings_toml(cfg))
    return str(path)


class Ticker:
    def __init__(self, instance: DagsterInstance, config_file: str) -> None:
        self.sensor = defs.get_repository_def().get_sensor_def("dolt_beads_sensor")
        self.instance, self.config_file, self.cursor = instance, config_file, None

    def tick(self, config_file: str | None = None):
        ctx = build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            definitions=defs,
            resources={"settings": GastownSettings(config_file=config_file or self.config_file)},
        )
        data = self.sensor.evaluate_tick(ctx)
        if data.cursor is not None:
            self.cursor = data.cursor
        return data


def test_the_sensor_requests_a_run_on_a_new_commit_or_changed_rows(tmp_path, mariadb, gastown_backup):
    rows = backup_rows(gastown_backup, "issues")
    load_backup(mariadb, "doltrig", gastown_backup, {r["id"] for r in rows[:20]})
    load_backup(mariadb, "plainrig", gastown_backup, {r["id"] for r in rows[20:35]})
    execute(mariadb, "doltrig", *DOLT_LOG)
    first = commit(mariadb, "doltrig", "bd: import")
    town = tmp_path / "town"
    for rig in ("doltrig", "plainrig"):
        (town / rig).mkdir(parents=True)
    config = write_config(tmp_path / "gastown-ft.toml", town, mariadb)

    (tmp_path / "dagster").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        t = Ticker(instance, config)
        baseline = t.tick()
        assert not baseline.run_requests
        assert baseline.skip_message.startswith(
            f"baseline recorded: 2 Dolt beads database(s): doltrig (20 rows, HEAD {first[:8]}), "
            "plainrig (15 rows)"
        )
        assert t.tick().skip_message.startswith("no change in 2 Dolt beads database(s)")

        # No dolt_log on plainrig: the updated_at watermark tells.
        execute(
            mariadb,
            "plainrig",
            f"UPDATE issues SET status = 'closed', updated_at = '2030-01-02 03:04:05' WHERE id = '{rows[21]['id']}'",
        )
        [request] = t.tick().run_requests
        assert sorted(k.to_user_string() for k in request.asset_selection) == sorted(
            ["raw_beads", *CORPUS_STAGES]
        )
        assert request.tags[TRIGGER_TAG] == "sensor:dolt_beads_sensor"
        assert request.tags[REASON_TAG] == "Dolt beads: plainrig: newest updated_at 2030-01-02T03:04:05"
        assert request.tags[RIGS_TAG] == "plainrig"
        assert request.run_key.startswith("dolt_beads:")
        assert t.tick().skip_message.startswith("no change")

        # A Dolt commit on doltrig, with no row of issues touched (e.g. a label added).
        second = commit(mariadb, "doltrig", "bd: label")
        [request] = t.tick().run_requests
        assert request.tags[REASON_TAG] == f"Dolt beads: doltrig: new commit {second[:8]}"
        assert request.tags[RIGS_TAG] == "doltrig"

        # A deleted row moves neither HEAD nor the watermark here, but the count.
        execute(mariadb, "plainrig", f"DELETE FROM issues WHERE id = '{rows[25]['id']}'")
        [request] = t.tick().run_requests
        assert request.tags[REASON_TAG] == "Dolt beads: plainrig: 15 -> 14 rows"
        cursor = t.cursor

        # A server that is down: a skip with the one-line reason, and the cursor kept.
        down = write_config(tmp_path / "down.toml", town, mariadb, port=free_port())
        gone = t.tick(down)
        assert not gone.run_requests and "\n" not in gone.skip_message
        assert "cannot read beads from the town's Dolt SQL server" in gone.skip_message
        assert gone.skip_message.endswith("; cursor kept") and t.cursor == cursor

        # A town that reads JSONL exports is not watched here.
        (town / "plainrig" / ".beads").mkdir()
        (town / "plainrig" / ".beads" / "issues.jsonl").write_text('{"id": "pl-1"}\n')
        jsonl = t.tick()
        assert not jsonl.run_requests and jsonl.skip_message.startswith(
            "beads are read from JSONL exports (town.beads_source = 'auto')"
        )
        assert t.cursor == cursor
