"""A beads server for the Dolt tests: one throwaway MariaDB for the session (MySQL protocol, as Dolt),
with the beads tables as beads' Dolt schema creates them, loaded from the real `bd backup` dump in
../shared (read at test time, never copied into the repo)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from gastown_ft.config import DoltConfig, TownConfig
from gastown_ft_tests.mariadb import MariaInfo, mariadb_or_skip, throwaway_mariadb

PASSWORD_ENV = "GASTOWN_FT_TEST_DOLT_PASSWORD"
BACKUP_TABLES = ("issues", "dependencies", "labels", "comments", "events")

# beads' Dolt schema (internal/storage/dolt/schema.go) at the version of the shared backup: its issues
# rows have these 53 columns, and its comment and event ids are integers.
BEADS_SCHEMA = """
CREATE TABLE issues (
    id VARCHAR(255) PRIMARY KEY,
    content_hash VARCHAR(64),
    title VARCHAR(500) NOT NULL,
    description TEXT NOT NULL,
    design TEXT NOT NULL,
    acceptance_criteria TEXT NOT NULL,
    notes TEXT NOT NULL,
    status VARCHAR(32) NOT NULL DEFAULT 'open',
    priority INT NOT NULL DEFAULT 2,
    issue_type VARCHAR(32) NOT NULL DEFAULT 'task',
    assignee VARCHAR(255),
    estimated_minutes INT,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_by VARCHAR(255) DEFAULT '',
    owner VARCHAR(255) DEFAULT '',
    updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    closed_at DATETIME,
    closed_by_session VARCHAR(255) DEFAULT '',
    external_ref VARCHAR(255),
    spec_id VARCHAR(1024) DEFAULT '',
    compaction_level INT DEFAULT 0,
    compacted_at DATETIME,
    compacted_at_commit VARCHAR(64),
    original_size INT,
    sender VARCHAR(255) DEFAULT '',
    ephemeral TINYINT(1) DEFAULT 0,
    wisp_type VARCHAR(32) DEFAULT '',
    pinned TINYINT(1) DEFAULT 0,
    is_template TINYINT(1) DEFAULT 0,
    crystallizes TINYINT(1) DEFAULT 0,
    mol_type VARCHAR(32) DEFAULT '',
    work_type VARCHAR(32) DEFAULT 'mutex',
    quality_score DOUBLE,
    source_system VARCHAR(255) DEFAULT '',
    metadata JSON DEFAULT (JSON_OBJECT()),
    source_repo VARCHAR(512) DEFAULT '',
    close_reason TEXT DEFAULT '',
    event_kind VARCHAR(32) DEFAULT '',
    actor VARCHAR(255) DEFAULT '',
    target VARCHAR(255) DEFAULT '',
    payload TEXT DEFAULT '',
    await_type VARCHAR(32) DEFAULT '',
    await_id VARCHAR(255) DEFAULT '',
    timeout_ns BIGINT DEFAULT 0,
    waiters TEXT DEFAULT '',
    hook_bead VARCHAR(255) DEFAULT '',
    role_bead VARCHAR(255) DEFAULT '',
    agent_state VARCHAR(32) DEFAULT '',
    last_activity DATETIME,
    role_type VARCHAR(32) DEFAULT '',
    rig VARCHAR(255) DEFAULT '',
    due_at DATETIME,
    defer_until DATETIME
);
CREATE TABLE dependencies (
    issue_id VARCHAR(255) NOT NULL,
    depends_on_id VARCHAR(255) NOT NULL,
    type VARCHAR(32) NOT NULL DEFAULT 'blocks',
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_by VARCHAR(255) NOT NULL,
    PRIMARY KEY (issue_id, depends_on_id)
);
CREATE TABLE labels (
    issue_id VARCHAR(255) NOT NULL,
    label VARCHAR(255) NOT NULL,
    PRIMARY KEY (issue_id, label)
);
CREATE TABLE comments (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    issue_id VARCHAR(255) NOT NULL,
    author VARCHAR(255) NOT NULL,
    text TEXT NOT NULL,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE events (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    issue_id VARCHAR(255) NOT NULL,
    event_type VARCHAR(32) NOT NULL,
    actor VARCHAR(255) NOT NULL,
    old_value TEXT,
    new_value TEXT,
    comment TEXT,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
"""


def _sql_value(value: Any, is_datetime: bool) -> Any:
    if is_datetime and isinstance(value, str):
        return value.replace("T", " ").rstrip("Z")  # backup form 2026-02-28T05:33:08Z
    return value


def backup_rows(backup: Path, table: str, ids: set[str] | None = None) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (backup / f"{table}.jsonl").open(encoding="utf-8")]
    key = "id" if table == "issues" else "issue_id"
    return [r for r in rows if ids is None or r[key] in ids]


def load_backup(info: MariaInfo, database: str, backup: Path, ids: set[str] | None = None) -> None:
    """A fresh database `database` with the beads tables and the backup's rows (those of `ids` only,
    when given)."""
    conn = pymysql.connect(**info.connect_args(), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
            cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            cur.execute(f"USE `{database}`")
            for statement in BEADS_SCHEMA.split(";"):
                if statement.strip():
                    cur.execute(statement)
            for table in BACKUP_TABLES:
                rows = backup_rows(backup, table, ids)
                if not rows:
                    continue
                cur.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = %s",
                    (database, table),
                )
                types = {name: kind for name, kind in cur.fetchall()}
                columns = sorted(rows[0])
                assert set(columns) <= set(types), f"{table}: columns missing from the schema"
                cur.executemany(
                    f"INSERT INTO {table} ({', '.join(f'`{c}`' for c in columns)}) "
                    f"VALUES ({', '.join(['%s'] * len(columns))})",
                    [tuple(_sql_value(r.get(c), types[c] == "datetime") for c in columns) for r in rows],
                )
    finally:
        conn.close()


def execute(info: MariaInfo, database: str, *statements: str) -> None:
    """Write to the test server (as an agent's `bd` would), autocommitted."""
    conn = pymysql.connect(**info.connect_args(database), autocommit=True)
    try:
        with conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
    finally:
        conn.close()


def dolt_town(root: Path, info: MariaInfo, **dolt: Any) -> TownConfig:
    """A town config that reads beads from the test server; the password travels in an env var."""
    return TownConfig(
        root=root,
        claude_projects_dir=root / "no-projects",
        beads_source=dolt.pop("beads_source", "dolt"),
        dolt=DoltConfig(host=info.host, port=info.port, user=info.user, password_env=PASSWORD_ENV, **dolt),
    )


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaInfo]:
    mariadb_or_skip()
    with throwaway_mariadb() as info:
        yield info


@pytest.fixture(autouse=True)
def _dolt_password(request, monkeypatch) -> None:
    if "mariadb" in request.fixturenames:
        monkeypatch.setenv(PASSWORD_ENV, request.getfixturevalue("mariadb").password)


@pytest.fixture(scope="session")
def gastown_backup(shared_samples: Path) -> Path:
    """The real `bd backup` of the gastown rig (677 issues with their side tables)."""
    return shared_samples / "gastown" / ".beads" / "backup"


@pytest.fixture(scope="session")
def gastown_db(mariadb: MariaInfo, gastown_backup: Path) -> str:
    """Database `gastown` on the test server: every row of the backup. Tests do not write to it."""
    load_backup(mariadb, "gastown", gastown_backup)
    return "gastown"
