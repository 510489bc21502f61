"""Beads read from a MySQL-protocol server (MariaDB standing in for the town's Dolt server) against the
JSONL reader on the same rows; paging; read-only sessions; where the server is; errors; the source."""

from __future__ import annotations

import json
from pathlib import Path

import pymysql
import pytest

from gastown_ft.config import DoltConfig, Settings, TownConfig, load_settings, render_settings_toml
from gastown_ft.corpus.beads import BACKUP_SIDE_FILES, read_beads
from gastown_ft.corpus.beads_source import beads_source_in_force
from gastown_ft.corpus.documents import ReadLog
from gastown_ft.corpus.dolt import read_only_session, resolve_target
from gastown_ft.corpus.dolt_beads import SIDE_ORDER, backup_path, iter_issue_pages, read_dolt_beads
from gastown_ft.corpus.read_reuse import source_fingerprint
from gastown_ft.corpus.scan import TownScan
from gastown_ft.corpus.sources import READERS
from gastown_ft.errors import GastownFTError
from gastown_ft_tests.dolt.conftest import backup_rows, dolt_town, execute, load_backup
from gastown_ft_tests.pgcluster import free_port

ER_READ_ONLY_TRANSACTION = 1792
NOT_COMPARED = ("format", "line", "database")  # which reader, and where in its input


def town_with_backup(tmp_path: Path, backup: Path) -> Path:
    """A town whose gastown rig holds the backup the server was loaded from (linked, not copied)."""
    root = tmp_path / "town"
    (root / "gastown" / ".beads").mkdir(parents=True)
    (root / "gastown" / ".beads" / "backup").symlink_to(backup, target_is_directory=True)
    return root


def view(docs) -> list[tuple]:
    return [(d.doc_id, d.key, d.path, d.rig, d.commit, d.role, d.title, d.text) for d in docs]


@pytest.mark.mariadb
@pytest.mark.shared
def test_documents_from_the_server_equal_those_of_its_backup(tmp_path, mariadb, gastown_db, gastown_backup):
    scan = TownScan(dolt_town(town_with_backup(tmp_path, gastown_backup), mariadb, databases=[gastown_db]))
    log = ReadLog()
    live = list(read_dolt_beads(scan, log))
    exported = list(read_beads(scan, ReadLog()))

    assert len(live) == len(exported) == 677
    assert view(live) == view(exported)  # same doc ids, paths, provenance and text
    assert [d.key for d in live] == sorted(d.key for d in live)
    for a, b in zip(live, exported, strict=True):  # and the same fields, side rows included
        assert {k: v for k, v in a.meta.items() if k not in NOT_COMPARED} == {
            k: v for k, v in b.meta.items() if k not in NOT_COMPARED
        }
    assert {d.kind for d in live} == {"dolt"} and live[0].meta["database"] == "gastown"
    assert live[0].path == "gastown/.beads/backup/issues.jsonl"
    for shown in ("\nlabels: ", "\ndepends on ", "\n## comment by ", "\nclosed: "):
        assert any(shown in d.text for d in live), shown
    assert log.files_read == 1 and not log.quarantined


@pytest.mark.mariadb
@pytest.mark.shared
def test_issues_are_read_in_pages_by_key(tmp_path, mariadb, gastown_db, gastown_backup):
    town = dolt_town(tmp_path, mariadb)
    with read_only_session(resolve_target(town)) as conn:
        pages = list(iter_issue_pages(conn, gastown_db, 50))
    assert [len(p) for p in pages] == [50] * 13 + [27]
    ids = [r["id"] for page in pages for r in page]
    assert ids == sorted(ids) and len(set(ids)) == 677

    root = town_with_backup(tmp_path, gastown_backup)
    small, large = (
        list(
            read_dolt_beads(
                TownScan(dolt_town(root, mariadb, databases=[gastown_db], page_size=n)), ReadLog()
            )
        )
        for n in (7, 5000)
    )
    assert view(small) == view(large)


@pytest.mark.mariadb
@pytest.mark.shared
def test_reads_run_in_a_read_only_transaction(tmp_path, mariadb, gastown_db):
    target = resolve_target(dolt_town(tmp_path, mariadb))
    writes = (
        "UPDATE issues SET title = 'rewritten' WHERE id = 'gt-00us'",
        "INSERT INTO labels (issue_id, label) VALUES ('gt-00us', 'sneaked-in')",
        "DELETE FROM comments",
    )
    with read_only_session(target, gastown_db) as conn:
        for sql in writes:
            with pytest.raises(pymysql.err.MySQLError) as refused, conn.cursor() as cur:
                cur.execute(sql)
            assert refused.value.args[0] == ER_READ_ONLY_TRANSACTION, sql
    conn = pymysql.connect(**mariadb.connect_args(gastown_db))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT title FROM issues WHERE id = 'gt-00us'")
            assert cur.fetchone() == ("--help",)
            cur.execute("SELECT COUNT(*) FROM comments")
            assert cur.fetchone() == (14,)
    finally:
        conn.close()


@pytest.mark.mariadb
@pytest.mark.shared
def test_read_reuse_sees_rows_change_on_the_server(tmp_path, mariadb, gastown_db, gastown_backup):
    ids = {r["id"] for r in backup_rows(gastown_backup, "issues")[:12]}
    load_backup(mariadb, "reuserig", gastown_backup, ids)
    (tmp_path / "reuserig").mkdir()
    town = dolt_town(tmp_path, mariadb, beads_source="auto")  # every database with a rig directory
    assert beads_source_in_force(town) == "dolt"
    before = source_fingerprint(town, TownScan(town), "beads")
    assert source_fingerprint(town, TownScan(town), "beads") == before
    log = ReadLog()
    docs = list(READERS["beads"](TownScan(town), log))  # the registered reader dispatches
    assert log.skipped["dolt_database_left_out"] >= 1  # gastown's: no such rig in this town
    assert len(docs) == 12 and {d.kind for d in docs} == {"dolt"} and {d.rig for d in docs} == {"reuserig"}

    execute(
        mariadb, "reuserig", f"UPDATE issues SET notes = 'more', updated_at = NOW() WHERE id = '{min(ids)}'"
    )
    assert source_fingerprint(town, TownScan(town), "beads") != before

    # A row the JSONL reader would refuse is refused here too, naming the field.
    execute(mariadb, "reuserig", f"UPDATE issues SET status = 'bogus' WHERE id = '{max(ids)}'")
    log = ReadLog()
    assert len(list(READERS["beads"](TownScan(town), log))) == 11
    [bad] = log.quarantined
    assert (bad.reason, bad.path, bad.rig) == (
        "invalid_status",
        "reuserig/.beads/backup/issues.jsonl",
        "reuserig",
    )
    assert f"bead {max(ids)} in Dolt database reuserig" in bad.detail


def test_an_unreachable_server_is_one_clear_line(tmp_path):
    port = free_port()  # nothing listens there
    town = TownConfig(root=tmp_path, beads_source="dolt", dolt=DoltConfig(port=port, connect_timeout_s=2))
    with pytest.raises(GastownFTError) as raised:
        list(READERS["beads"](TownScan(town), ReadLog()))
    message = str(raised.value)
    assert "\n" not in message
    assert f"the town's Dolt SQL server at 127.0.0.1:{port} (port from town.dolt.port)" in message
    assert "gt dolt start" in message and 'town.beads_source = "jsonl"' in message


def test_the_server_is_found_where_gas_town_records_it(tmp_path):
    town = TownConfig(root=tmp_path, dolt=DoltConfig())
    got = resolve_target(town, env={})
    assert (got.host, got.port, got.user, got.password, got.origin) == (
        "127.0.0.1",
        3307,
        "root",
        "",
        "Gas Town's default port",
    )
    (tmp_path / "mayor").mkdir()
    (tmp_path / "mayor" / "daemon.json").write_text(json.dumps({"env": {"GT_DOLT_PORT": "3311"}}))
    assert resolve_target(town, env={}).port == 3311
    env = {"GT_DOLT_PORT": "3312", "GT_DOLT_HOST": "dolt.internal", "GT_DOLT_PASSWORD": "pw"}
    got = resolve_target(town, env=env)
    assert (got.host, got.port, got.password, got.origin) == ("dolt.internal", 3312, "pw", "$GT_DOLT_PORT")
    (tmp_path / ".dolt-data").mkdir()
    (tmp_path / ".dolt-data" / "config.yaml").write_text("listener:\n  port: 3313\n")
    assert resolve_target(town, env=env).port == 3313
    (tmp_path / "daemon").mkdir()
    state = {"running": True, "pid": 4242, "port": 3314, "data_dir": str(tmp_path / ".dolt-data")}
    (tmp_path / "daemon" / "dolt-state.json").write_text(json.dumps(state))
    got = resolve_target(town, env=env)
    assert (got.port, got.origin) == (3314, "daemon/dolt-state.json")
    explicit = TownConfig(
        root=tmp_path, dolt=DoltConfig(host="h", port=4000, user="reader", password_env="MY_PW")
    )
    got = resolve_target(explicit, env={**env, "MY_PW": "secret"})
    assert (got.host, got.port, got.user, got.password) == ("h", 4000, "reader", "secret")
    assert "secret" not in repr(got)


def test_the_beads_source_setting_and_where_documents_point(tmp_path):
    root = tmp_path / "town"
    (root / "alpha" / "mayor" / "rig" / ".beads").mkdir(parents=True)
    (root / "beta").mkdir()
    dolt = DoltConfig()
    assert beads_source_in_force(TownConfig(root=root)) == "jsonl"
    assert beads_source_in_force(TownConfig(root=root, dolt=dolt)) == "dolt"  # no export in the town
    assert beads_source_in_force(TownConfig(root=root, beads_source="jsonl", dolt=dolt)) == "jsonl"
    (root / "beta" / ".beads").mkdir()
    (root / "beta" / ".beads" / "issues.jsonl").write_text('{"id": "be-1", "title": "x"}\n')
    assert beads_source_in_force(TownConfig(root=root, dolt=dolt)) == "jsonl"  # an export wins in auto
    assert beads_source_in_force(TownConfig(root=root, beads_source="dolt")) == "dolt"
    [doc] = READERS["beads"](TownScan(TownConfig(root=root, dolt=dolt)), ReadLog())
    assert doc.kind == "export"

    scan = TownScan(TownConfig(root=root))
    assert scan.rel(backup_path(scan, "alpha")) == "alpha/mayor/rig/.beads/backup/issues.jsonl"
    assert scan.rel(backup_path(scan, "beta")) == "beta/.beads/backup/issues.jsonl"
    assert scan.rel(backup_path(scan, "hq")) == ".beads/backup/issues.jsonl"
    assert set(SIDE_ORDER) == set(BACKUP_SIDE_FILES)


def test_the_dolt_section_round_trips(tmp_path):
    cfg = Settings.model_validate(
        {"town": {"root": str(tmp_path), "beads_source": "dolt", "dolt": {"port": 3400, "databases": ["hq"]}}}
    )
    path = tmp_path / "gastown-ft.toml"
    path.write_text(render_settings_toml(cfg))
    assert "[town.dolt]" in path.read_text()
    loaded = load_settings(path).town
    assert loaded.beads_source == "dolt" and loaded.dolt == DoltConfig(port=3400, databases=["hq"])
    path.write_text(f'[town]\nroot = "{tmp_path}"\n[town.dolt]\n')
    assert load_settings(path).town.dolt == DoltConfig()
    path.write_text(f'[town]\nroot = "{tmp_path}"\n[town.dolt]\npassword = "x"\n')
    with pytest.raises(GastownFTError, match=r"town\.dolt\.password: unknown key"):
        load_settings(path)


@pytest.mark.mariadb
@pytest.mark.shared
def test_routes_give_each_bead_the_rig_the_jsonl_reader_gives(tmp_path, mariadb, gastown_db, gastown_backup):
    root = town_with_backup(tmp_path, gastown_backup)
    (root / "ledger" / ".beads").mkdir(parents=True)  # a second rig
    (root / ".beads").mkdir()
    routes = [
        {"prefix": "gt-0", "path": "ledger"},
        {"prefix": "gt-1", "path": "."},
        {"prefix": "gt-", "path": "gastown"},
    ]
    (root / ".beads" / "routes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in routes))
    scan = TownScan(dolt_town(root, mariadb, databases=[gastown_db]))
    live = list(read_dolt_beads(scan, ReadLog()))
    exported = list(read_beads(scan, ReadLog()))

    assert view(live) == view(exported)  # rig and commit of each bead as the JSONL reader has them
    ids = [d.key for d in live]
    want = {
        "ledger": sum(i.startswith("gt-0") for i in ids),
        None: sum(i.startswith("gt-1") for i in ids),  # routed to the town
        "gastown": sum(not i.startswith(("gt-0", "gt-1")) for i in ids),
    }
    assert {rig: sum(d.rig == rig for d in live) for rig in want} == want and all(want.values())
    assert {d.path for d in live} == {"gastown/.beads/backup/issues.jsonl"}  # where it was read, as before


@pytest.mark.mariadb
@pytest.mark.shared
def test_an_id_in_two_databases_is_read_once_as_across_files(tmp_path, mariadb, gastown_backup):
    rows = backup_rows(gastown_backup, "issues")[:12]
    ids = sorted(r["id"] for r in rows)
    for database in ("alpha", "beta"):
        load_backup(mariadb, database, gastown_backup, set(ids))
        (tmp_path / database / ".beads").mkdir(parents=True)
    newer, tie = ids[3], ids[7]
    execute(
        mariadb,
        "beta",
        f"UPDATE issues SET notes = 'newer in beta', updated_at = updated_at + INTERVAL 1 HOUR WHERE id = '{newer}'",
        f"UPDATE issues SET title = CONCAT(title, ' (edited)'), updated_at = updated_at WHERE id = '{tie}'",
    )
    # The tie goes to the copy in the bead's home: the routes send that id to beta.
    (tmp_path / ".beads").mkdir()
    (tmp_path / ".beads" / "routes.jsonl").write_text(json.dumps({"prefix": tie, "path": "beta"}) + "\n")
    log = ReadLog()
    docs = list(read_dolt_beads(TownScan(dolt_town(tmp_path, mariadb, databases=["alpha", "beta"])), log))

    assert sorted(d.key for d in docs) == ids  # each id once
    from_beta = {d.key for d in docs if d.meta["database"] == "beta"}
    assert from_beta == {newer, tie}
    assert {d.key: d.rig for d in docs}[tie] == "beta" and {d.key: d.rig for d in docs}[ids[0]] == "alpha"
    assert log.skipped["identical_duplicate_in_other_file"] == 10
    superseded = sorted((q.reason, q.path, q.rig, q.detail) for q in log.quarantined)
    assert [(r, p, g) for r, p, g, _ in superseded] == [
        ("superseded_version", "alpha/.beads/backup/issues.jsonl", "alpha")
    ] * 2
    details = " ".join(d for *_, d in superseded)
    assert f"the row in Dolt database alpha is another version of bead {newer}" in details
    assert "the copy where the town's routes send the id is kept" in details
