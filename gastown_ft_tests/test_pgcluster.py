"""The throwaway PostgreSQL helper: it starts a real 15.x server, and tearing down removes every trace."""

from __future__ import annotations

import socket

import pytest

from gastown_ft_tests.pgcluster import create_database, pg_bin_or_skip, throwaway_postgres

pytestmark = pytest.mark.postgres


def _connect(pg, **kw):
    import psycopg2

    return psycopg2.connect(pg.url, connect_timeout=5, **kw)


def test_throwaway_cluster_serves_then_vanishes(tmp_path):
    import psycopg2

    bin_dir = pg_bin_or_skip()
    with throwaway_postgres(tmp_path, bin_dir=bin_dir) as pg:
        assert pg.host == "127.0.0.1" and pg.db == "dagster" and pg.user and pg.password
        assert pg.url.startswith("postgresql://") and pg.url.endswith(f":{pg.port}/dagster")
        assert pg.sqlalchemy_url.startswith("postgresql+psycopg2://")
        data_dir, base_dir = pg.data_dir, pg.base_dir
        assert data_dir is not None and (data_dir / "PG_VERSION").is_file()

        conn = _connect(pg)
        try:
            with conn.cursor() as cur:
                cur.execute("select version(), current_database(), current_setting('server_version_num')")
                version, db, num = cur.fetchone()
        finally:
            conn.close()
        assert version.startswith("PostgreSQL 15."), version
        assert 150000 <= int(num) < 160000
        assert db == "dagster"

        # A password is required: a wrong one is refused over TCP.
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(
                host=pg.host, port=pg.port, user=pg.user, password="wrong", dbname=pg.db, connect_timeout=5
            )

        # Listening on 127.0.0.1 only; other databases can be made on the same server.
        other = create_database(pg, "scratch")
        conn = _connect(other)
        conn.close()
        port = pg.port

    assert not data_dir.exists(), f"teardown left {data_dir}"
    assert not base_dir.exists(), f"teardown left {base_dir}"
    with pytest.raises(psycopg2.OperationalError):
        _connect(pg).close()
    with socket.socket() as s:  # nothing listens on the port any more
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_teardown_runs_when_the_body_fails(tmp_path):
    bin_dir = pg_bin_or_skip()
    seen = {}
    with pytest.raises(ZeroDivisionError):
        with throwaway_postgres(tmp_path, bin_dir=bin_dir) as pg:
            seen["pg"] = pg
            1 / 0  # noqa: B018
    pg = seen["pg"]
    assert not pg.base_dir.exists()
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.1", pg.port)) != 0
