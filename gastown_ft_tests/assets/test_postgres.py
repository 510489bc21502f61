"""The source assets materialized against a real PostgreSQL instance (deploy/dagster.yaml)."""

from __future__ import annotations

import shutil

import pytest
from dagster import DagsterInstance

from gastown_ft.orchestrate import materialize_assets
from gastown_ft_tests.assets.test_sources import table, write_config
from gastown_ft_tests.conftest import REPO_ROOT
from gastown_ft_tests.pgcluster import PgInfo, create_database


@pytest.mark.postgres
def test_sources_materialize_into_postgres(postgres: PgInfo, demo_town, tmp_path, monkeypatch):
    import psycopg2

    pg = create_database(postgres, "gastown_sources")
    for k, v in pg.env().items():
        monkeypatch.setenv(k, v)
    settings = write_config(tmp_path, root=demo_town.root, claude_projects_dir=demo_town.claude_projects_dir)
    home = tmp_path / "pg-home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    instance = DagsterInstance.from_config(str(home))
    try:
        result = materialize_assets(settings, instance, ["raw_formulas", "raw_beads", "quarantine"])
        assert result.success
        run_id = result.run_id
    finally:
        instance.dispose()

    with psycopg2.connect(**pg.dsn(), connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("select status from runs where run_id = %s", (run_id,))
        assert cur.fetchone() == ("SUCCESS",)
        cur.execute(
            "select asset_key, count(*) from event_logs where run_id = %s and "
            "dagster_event_type = 'ASSET_MATERIALIZATION' group by asset_key order by asset_key",
            (run_id,),
        )
        keys = [k for k, _ in cur.fetchall()]
        assert keys == ['["quarantine"]', '["raw_beads"]', '["raw_formulas"]']
        cur.execute("select count(*) from event_logs where run_id = %s", (run_id,))
        assert cur.fetchone()[0] > 10
    assert len(table(settings, "raw", "beads")) > 0
