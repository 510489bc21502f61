"""Beads read live from the town's Dolt SQL server, as the same Documents the JSONL reader makes.

One database per rig, plus `hq` for the town's own beads; the tables as `bd backup` dumps them:
`issues`, joined by issue id with `dependencies`, `labels`, `comments` and `events`. Issues are read
in pages by key (`id > last ORDER BY id LIMIT n`), each page's side rows with it, all in one
read-only transaction (corpus.dolt). Values are put in the form `bd backup` writes (UTC times as
`2026-02-28T05:33:08Z`); then a row goes the JSONL reader's way: the same field checks
(beads.field_problems: a bad row is quarantined naming the field) and the same document
(beads.bead_document), kind "dolt". A document keeps the path its backup would have
(`<beads dir>/backup/issues.jsonl`), so a town that switches between its backup and its server keeps
every doc id.

The town's `.beads/routes.jsonl` counts as it does for the JSONL reader: a bead's rig (and commit) is
the one its id prefix routes to (scan.bead_provenance), else its database's; and an id that several
databases hold is read once, the copy kept as of several files (beads.settle_copies: the newest
`updated_at`, then the copy in the database of the bead's home), the others counted or quarantined.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql

from gastown_ft.config import DoltConfig
from gastown_ft.corpus.beads import (
    BACKUP_SIDE_FILES,
    EVENT_VALUE_CHARS,
    BeadCopy,
    BeadFile,
    bead_copy,
    bead_document,
    field_problems,
    quarantine_invalid,
    settle_copies,
)
from gastown_ft.corpus.documents import Document, ReadLog
from gastown_ft.corpus.dolt import (
    ER_NO_SUCH_TABLE,
    beads_databases,
    fetch_all,
    quote_ident,
    read_only_session,
    resolve_target,
    selected_databases,
)
from gastown_ft.corpus.scan import TownScan

KIND = "dolt"
TOWN_DATABASE = "hq"
SHARED_IDS_PER_QUERY = 500  # ids in one `IN (...)` list
# Side rows in the order `bd backup` writes them (comment and event ids are UUIDs in newer schemas,
# so time comes before id).
SIDE_ORDER = {
    "dependencies": "issue_id, depends_on_id",
    "labels": "issue_id, label",
    "comments": "issue_id, created_at, id",
    "events": "issue_id, created_at, id",
}


def backup_form(value: Any) -> Any:
    """A column value as `bd backup` writes it to JSON."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        text = value.strftime("%Y-%m-%dT%H:%M:%S")
        if value.microsecond:
            text += f".{value.microsecond:06d}".rstrip("0")
        return text + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, timedelta):
        return str(value)
    return value


def _epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return None


def backup_path(scan: TownScan, database: str) -> Path:
    """Where `bd backup` of `database` lands: the town's `.beads/` for hq, else the `.beads/` of the
    rig's canonical clone (`<rig>/mayor/rig`, or the rig directory of a flat rig)."""
    if database == TOWN_DATABASE:
        return scan.root / ".beads" / "backup" / "issues.jsonl"
    rig = scan.rigs.get(database)
    rig_dir = rig.path if rig is not None else scan.root / database
    clone = getattr(rig, "clone", None)
    if clone is None:
        canonical = rig_dir / "mayor" / "rig"
        clone = canonical if canonical.is_dir() else rig_dir
    return clone / ".beads" / "backup" / "issues.jsonl"


def iter_issue_pages(conn: pymysql.Connection, database: str, page_size: int) -> Iterator[list[dict]]:
    """The `issues` rows by id, `page_size` at a time (keyset paging: no OFFSET scans)."""
    table = f"{quote_ident(database)}.issues"
    rows = fetch_all(conn, f"SELECT * FROM {table} ORDER BY id LIMIT %s", (page_size,))
    while rows:
        yield rows
        if len(rows) < page_size:
            return
        rows = fetch_all(
            conn, f"SELECT * FROM {table} WHERE id > %s ORDER BY id LIMIT %s", (rows[-1]["id"], page_size)
        )


def _side_rows(conn: pymysql.Connection, database: str, name: str, ids: list[str]) -> dict[str, list[dict]]:
    marks = ", ".join(["%s"] * len(ids))
    try:
        rows = fetch_all(
            conn,
            f"SELECT * FROM {quote_ident(database)}.{name} WHERE issue_id IN ({marks}) "
            f"ORDER BY {SIDE_ORDER[name]}",
            ids,
        )
    except pymysql.err.ProgrammingError as e:  # an older schema without this table
        if e.args and e.args[0] == ER_NO_SUCH_TABLE:
            return {}
        raise
    by_issue: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        plain = {k: backup_form(v) for k, v in row.items()}
        if name == "events":  # as the backup reader does: events carry whole issue snapshots
            plain = {
                k: v[:EVENT_VALUE_CHARS] + "…" if isinstance(v, str) and len(v) > EVENT_VALUE_CHARS else v
                for k, v in plain.items()
            }
        by_issue[plain["issue_id"]].append(plain)
    return by_issue


def custom_statuses(conn: pymysql.Connection, database: str) -> frozenset[str]:
    """Statuses the database adds (`bd config set status.custom "in_review:active,..."`, or the
    custom_statuses table of newer schemas), on top of the built-in ones."""
    names: set[str] = set()
    queries = (
        f"SELECT value FROM {quote_ident(database)}.config WHERE `key` = 'status.custom'",
        f"SELECT name AS value FROM {quote_ident(database)}.custom_statuses",
    )
    for sql in queries:
        try:
            rows = fetch_all(conn, sql)
        except pymysql.err.ProgrammingError as e:
            if e.args and e.args[0] == ER_NO_SUCH_TABLE:
                continue
            raise
        for row in rows:
            names |= {part.split(":", 1)[0].strip() for part in str(row["value"] or "").split(",")}
    return frozenset(n for n in names if n)


def _database_place(scan: TownScan, database: str) -> tuple[Path, str | None, str | None]:
    """(backup path, rig, commit) of a database: those of the directory its backup would go to; a
    rig database with no such rig directory counts as the rig of its name."""
    path = backup_path(scan, database)
    rig, commit = scan.provenance(path)
    if rig is None and database != TOWN_DATABASE:
        rig = database
    return path, rig, commit


def _resolve_across_databases(
    scan: TownScan, log: ReadLog, conn: pymysql.Connection, databases: list[str]
) -> dict[str, set[str]]:
    """The bead ids each database leaves out because another database's copy is kept: an id in
    several databases is resolved as an id in several files is (beads.settle_copies). Only the ids
    are read of every database, and whole rows only of the ids held more than once."""
    if len(databases) < 2:
        return {}
    seen: Counter[str] = Counter()
    for database in databases:
        rows = fetch_all(conn, f"SELECT id FROM {quote_ident(database)}.issues")
        seen.update(r["id"] for r in rows)
    shared = sorted(i for i, n in seen.items() if n > 1)
    del seen
    if not shared:
        return {}
    copies: dict[str, list[BeadCopy]] = defaultdict(list)
    held: dict[str, tuple[BeadFile, set[str]]] = {}
    for order, database in enumerate(databases):
        path, rig, _commit = _database_place(scan, database)
        f = BeadFile(path, scan.rel(path), rig, True, {}, database=database)
        statuses = custom_statuses(conn, database)
        for start in range(0, len(shared), SHARED_IDS_PER_QUERY):
            chunk = shared[start : start + SHARED_IDS_PER_QUERY]
            marks = ", ".join(["%s"] * len(chunk))
            sql = f"SELECT * FROM {quote_ident(database)}.issues WHERE id IN ({marks})"
            for row in fetch_all(conn, sql, chunk):
                bead = {k: backup_form(v) for k, v in row.items()}
                if field_problems(bead, statuses):
                    continue  # quarantined when its database is read
                f.keep[bead["id"]] = None
                copies[bead["id"]].append(bead_copy(f, order, None, bead, scan))
        held[database] = (f, set(f.keep))
    settle_copies(copies, log)
    return {database: ids - set(f.keep) for database, (f, ids) in held.items()}


def _database_documents(
    scan: TownScan,
    log: ReadLog,
    conn: pymysql.Connection,
    database: str,
    page_size: int,
    left_out: set[str],
) -> Iterator[Document]:
    path, db_rig, db_commit = _database_place(scan, database)
    rel = scan.rel(path)
    statuses = custom_statuses(conn, database)
    log.files_read += 1
    for page in iter_issue_pages(conn, database, page_size):
        page = [r for r in page if r["id"] not in left_out]
        if not page:
            continue
        side = {name: _side_rows(conn, database, name, [r["id"] for r in page]) for name in BACKUP_SIDE_FILES}
        for row in page:
            bead = {k: backup_form(v) for k, v in row.items()}
            problems = field_problems(bead, statuses)
            if problems:  # as the JSONL reader does: quarantined, naming the field
                quarantine_invalid(
                    log, problems, f"bead {bead['id']} in Dolt database {database}", rel, db_rig
                )
                continue
            if bead.get("status") == "tombstone":
                log.skip("tombstone")
                continue
            # The rig its prefix routes to, as the JSONL reader has it; else the database's.
            routed = scan.route_of(bead["id"]) is not None
            rig, commit = scan.bead_provenance(bead["id"], path) if routed else (db_rig, db_commit)
            doc = bead_document(
                bead, 0, rel=rel, rig=rig, commit=commit, mtime=_epoch(row.get("updated_at")), side=side
            )
            doc.kind = KIND
            doc.meta = {k: v for k, v in doc.meta.items() if k != "line"} | {
                "format": KIND,
                "database": database,
            }
            yield doc


def read_dolt_beads(scan: TownScan, log: ReadLog) -> Iterator[Document]:
    """Every selected beads database of the town's server, in one read-only transaction."""
    town = scan.config
    page_size = (town.dolt or DoltConfig()).page_size
    with read_only_session(resolve_target(town)) as conn:
        on_server = beads_databases(conn)
        selected = selected_databases(town, on_server)
        if left_out := set(on_server) - set(selected):  # other rigs', or with no rig in the town
            log.skip("dolt_database_left_out", len(left_out))
        elsewhere = _resolve_across_databases(scan, log, conn, selected)
        for database in selected:
            yield from _database_documents(
                scan, log, conn, database, page_size, elsewhere.get(database, set())
            )
