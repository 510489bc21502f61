"""The deployment files: deploy/dagster.yaml loads into a Postgres-backed DagsterInstance, and
docker-compose.yml is a valid compose file.

The Postgres test needs the session `postgres` fixture (gastown_ft_tests/pg_fixture.py, imported by
conftest.py); the compose test needs `docker compose` (or a standalone v2+ `docker-compose`) and no
engine, and skips without one.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gastown_ft_tests.pgcluster import PgInfo, create_database

REPO = Path(__file__).resolve().parents[1]
DAGSTER_YAML = REPO / "deploy" / "dagster.yaml"
COMPOSE_FILE = REPO / "docker-compose.yml"
PG_ENV = ("DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_HOST", "DAGSTER_PG_DB", "DAGSTER_PG_PORT")


def _dagster_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DAGSTER_YAML, home / "dagster.yaml")
    return home


def test_dagster_yaml_matches_the_instance_schema(tmp_path, monkeypatch):
    """No database needed: the file passes dagster's instance config schema, with the settings we rely on."""
    from dagster._core.instance.config import dagster_instance_config

    for var in PG_ENV:
        monkeypatch.setenv(var, "5432" if var.endswith("PORT") else "x")
    config, custom_class = dagster_instance_config(str(_dagster_home(tmp_path)))
    assert custom_class is None

    raw = yaml.safe_load(DAGSTER_YAML.read_text())
    pg = raw["storage"]["postgres"]["postgres_db"]
    assert {k: v["env"] for k, v in pg.items() if isinstance(v, dict)} == {
        "username": "DAGSTER_PG_USERNAME",
        "password": "DAGSTER_PG_PASSWORD",
        "hostname": "DAGSTER_PG_HOST",
        "db_name": "DAGSTER_PG_DB",
        "port": "DAGSTER_PG_PORT",
    }
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which dagster-postgres doesn't install.
    assert pg["scheme"] == "postgresql+psycopg2"
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 4
    assert config["telemetry"] == {"enabled": False}


@pytest.mark.postgres
def test_dagster_yaml_gives_a_postgres_instance(postgres: PgInfo, tmp_path, monkeypatch):
    import psycopg2
    from dagster import DagsterInstance
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    # a database of its own, empty: the tables checked below are the instance's doing
    pg = create_database(postgres, f"deploy_test_{secrets.token_hex(4)}")
    for var, value in pg.env().items():
        monkeypatch.setenv(var, value)
    home = _dagster_home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    instance = DagsterInstance.from_config(str(home))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert instance.run_storage._engine.url.drivername == "postgresql+psycopg2"
        assert instance.run_storage._engine.url.port == pg.port
        assert list(instance.get_runs()) == []
        assert instance.get_runs_count() == 0
        assert not instance.telemetry_enabled

        coordinator = instance.run_coordinator
        assert isinstance(coordinator, QueuedRunCoordinator)
        # The daemon dequeues by the instance's concurrency config (the `concurrency: runs:` block).
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 4
        assert [dict(t) for t in queue.tag_concurrency_limits] == [
            {"key": "gastown-ft/stage", "value": "training", "limit": 1},
            {"key": "gastown-ft/stage", "value": "corpus", "limit": 1},
        ]
    finally:
        instance.dispose()

    conn = psycopg2.connect(**pg.dsn(), connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("select tablename from pg_tables where schemaname = 'public'")
            tables = {row[0] for row in cur.fetchall()}
    finally:
        conn.close()
    assert {"runs", "event_logs", "jobs", "instigators", "alembic_version"} <= tables, sorted(tables)


def _compose_command() -> list[str] | None:
    """`docker compose` if the plugin works, else a standalone docker-compose v2+ (PATH or this venv)."""
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    for exe in (shutil.which("docker-compose"), str(Path(sys.executable).parent / "docker-compose")):
        if exe and os.access(exe, os.X_OK) and [exe] not in candidates:
            candidates.append([exe])
    for cmd in candidates:
        try:
            proc = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        # v1 (the end-of-life Python docker-compose 1.x) checks against an older schema: not accepted
        # "Docker Compose version v5.6.1"; v1 says "docker-compose version 1.29.2, build ..."
        m = re.search(r"version v?(\d+)\.", proc.stdout, re.IGNORECASE)
        if proc.returncode == 0 and m and int(m.group(1)) >= 2:
            return cmd
    return None


def test_compose_file_is_valid(tmp_path):
    cmd = _compose_command()
    if cmd is None:
        pytest.skip(
            "no Docker Compose v2+: `docker compose version` fails (compose plugin missing) and "
            "no standalone docker-compose is installed"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_PG_", "GT_TOWN", "GASTOWN_FT_"))}
    env.setdefault("HOME", str(tmp_path))
    base = [*cmd, "-f", str(COMPOSE_FILE), "--project-directory", str(REPO)]
    proc = subprocess.run(
        [*base, "config", "--quiet"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr

    proc = subprocess.run(
        [*base, "config", "--services"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == {"postgres", "code-location", "webserver", "daemon"}
