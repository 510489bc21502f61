"""The town's Dolt SQL server: where it is, read-only sessions on it, and the state of each database.

Gas Town runs one Dolt SQL server per town (MySQL protocol), one database per rig plus `hq` for the
town's own beads, by default on 127.0.0.1:3307 as root with no password (dolt-storage.md). Unset
[town.dolt] fields are found the way `gt` finds its server: the port the running server recorded in
`daemon/dolt-state.json`, then `.dolt-data/config.yaml` (listener.port), $GT_DOLT_PORT and
`mayor/daemon.json` (env.GT_DOLT_PORT); host $GT_DOLT_HOST; user $GT_DOLT_USER; password
$GT_DOLT_PASSWORD.

Every read runs inside `START TRANSACTION READ ONLY`: the server refuses writes, and all pages of one
database come from one snapshot. A server that cannot be reached is a `GastownFTError` of one line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors
import yaml

from gastown_ft.config import DoltConfig, TownConfig
from gastown_ft.errors import GastownFTError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3307
DEFAULT_USER = "root"
SYSTEM_SCHEMAS = frozenset({"information_schema", "mysql", "performance_schema", "sys"})
ER_NO_SUCH_TABLE = 1146
ER_ACCESS_DENIED = (1044, 1045)
ER_BAD_DB = 1049


@dataclass(frozen=True)
class DoltTarget:
    """Where the server is and how to log in; `origin` says where host and port came from."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    origin: str
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _json_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _port(value: Any) -> int | None:
    try:
        port = int(value)
    except (TypeError, ValueError):
        return None
    return port if 0 < port < 65536 else None


def _town_port(root: Path, env: Mapping[str, str]) -> tuple[int, str]:
    """The port the town's own records give, and which record gave it."""
    state = _json_file(root / "daemon" / "dolt-state.json")
    if port := _port(state.get("port")):
        return port, "daemon/dolt-state.json"
    try:
        cfg = yaml.safe_load((root / ".dolt-data" / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        cfg = None
    listener = cfg.get("listener") if isinstance(cfg, dict) else None
    if isinstance(listener, dict) and (port := _port(listener.get("port"))):
        return port, ".dolt-data/config.yaml"
    if port := _port(env.get("GT_DOLT_PORT")):
        return port, "$GT_DOLT_PORT"
    daemon_env = _json_file(root / "mayor" / "daemon.json").get("env")
    if isinstance(daemon_env, dict) and (port := _port(daemon_env.get("GT_DOLT_PORT"))):
        return port, "mayor/daemon.json"
    return DEFAULT_PORT, "Gas Town's default port"


def resolve_target(town: TownConfig, env: Mapping[str, str] | None = None) -> DoltTarget:
    """The server of `town`: [town.dolt] where set, else what the town and `gt`'s variables say."""
    env = os.environ if env is None else env
    cfg = town.dolt or DoltConfig()
    root = Path(os.path.expanduser(str(town.root)))
    if cfg.port is not None:
        port, origin = cfg.port, "town.dolt.port"
    else:
        port, origin = _town_port(root, env)
    host = cfg.host or env.get("GT_DOLT_HOST") or DEFAULT_HOST
    password = env.get(cfg.password_env, "") if cfg.password_env else env.get("GT_DOLT_PASSWORD", "")
    return DoltTarget(
        host=host,
        port=port,
        user=cfg.user or env.get("GT_DOLT_USER") or DEFAULT_USER,
        password=password,
        origin=origin,
        connect_timeout_s=cfg.connect_timeout_s,
        read_timeout_s=cfg.read_timeout_s,
    )


def _one_line(e: BaseException) -> str:
    args = getattr(e, "args", ())
    text = str(args[1]) if len(args) >= 2 else str(e)
    return " ".join(text.split()) or type(e).__name__


def server_error(target: DoltTarget, e: BaseException, database: str | None = None) -> GastownFTError:
    """One line: which server, where its address came from, what went wrong, what to do."""
    code = e.args[0] if getattr(e, "args", None) else None
    if code in ER_ACCESS_DENIED:
        todo = "check town.dolt.user and town.dolt.password_env"
    elif code == ER_BAD_DB:
        todo = "check town.dolt.databases"
    elif isinstance(e, pymysql.err.OperationalError | pymysql.err.InterfaceError):
        todo = 'start it with `gt dolt start`, or read the JSONL exports (town.beads_source = "jsonl")'
    else:
        todo = "is it the town's beads server?"
    where = f"database {database!r} on " if database else ""
    return GastownFTError(
        f"cannot read beads from {where}the town's Dolt SQL server at {target.address} "
        f"(port from {target.origin}): {_one_line(e)}; {todo}"
    )


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@contextmanager
def read_only_session(target: DoltTarget, database: str | None = None) -> Iterator[pymysql.Connection]:
    """A connection inside a READ ONLY transaction (rolled back at the end). Server errors, at
    connect time or in the body, come out as one-line `GastownFTError`s."""
    try:
        conn = pymysql.connect(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password,
            database=database,
            charset="utf8mb4",
            autocommit=False,
            connect_timeout=target.connect_timeout_s,
            read_timeout=target.read_timeout_s,
            write_timeout=target.read_timeout_s,
            cursorclass=pymysql.cursors.DictCursor,
        )
    except pymysql.err.MySQLError as e:
        raise server_error(target, e, database) from None
    try:
        with conn.cursor() as cur:
            cur.execute("START TRANSACTION READ ONLY")
        yield conn
        conn.rollback()
    except pymysql.err.MySQLError as e:
        raise server_error(target, e, database) from None
    finally:
        conn.close()


def fetch_all(conn: pymysql.Connection, sql: str, args: Any = None) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def beads_databases(conn: pymysql.Connection) -> list[str]:
    """Databases on the server that hold an `issues` table (the beads databases)."""
    rows = fetch_all(
        conn,
        "SELECT DISTINCT table_schema AS db FROM information_schema.tables WHERE table_name = 'issues'",
    )
    return sorted({r["db"] for r in rows} - SYSTEM_SCHEMAS)


def selected_databases(town: TownConfig, on_server: list[str]) -> list[str]:
    """[town.dolt] databases when listed; else the server's that belong to the town: `hq` (the town's
    own beads) and those with a rig directory of that name (a database whose rig is gone, or a test
    leftover, is not read). Always within town.rigs and town.exclude_rigs."""
    cfg = town.dolt or DoltConfig()
    if cfg.databases:
        names = list(cfg.databases)
    else:
        root = Path(os.path.expanduser(str(town.root)))
        names = [n for n in on_server if n == "hq" or (root / n).is_dir()]
    keep = [n for n in names if n == "hq" or not town.rigs or n in town.rigs]
    return [n for n in keep if n not in town.exclude_rigs]


def dolt_head(conn: pymysql.Connection, database: str) -> str | None:
    """The commit at HEAD from Dolt's `dolt_log` system table (newest first); None on a server
    without it (any MySQL-protocol server that is not Dolt)."""
    try:
        rows = fetch_all(conn, f"SELECT commit_hash FROM {quote_ident(database)}.dolt_log LIMIT 1")
    except pymysql.err.ProgrammingError as e:
        if e.args and e.args[0] == ER_NO_SUCH_TABLE:
            return None
        raise
    return str(rows[0]["commit_hash"]) if rows else None


def database_state(conn: pymysql.Connection, database: str) -> dict[str, Any]:
    """What tells a change: the Dolt HEAD where there is one, and always the row count and newest
    updated_at (writes can sit in Dolt's working set before a commit; a delete moves only the count)."""
    [row] = fetch_all(conn, f"SELECT COUNT(*) AS n, MAX(updated_at) AS t FROM {quote_ident(database)}.issues")
    newest = row["t"]
    return {
        "head": dolt_head(conn, database),
        "rows": int(row["n"]),
        "updated_at": newest.isoformat() if hasattr(newest, "isoformat") else newest,
    }


def town_dolt_state(town: TownConfig) -> dict[str, dict[str, Any]]:
    """The state of every selected beads database of the town's server, by database name."""
    target = resolve_target(town)
    with read_only_session(target) as conn:
        names = selected_databases(town, beads_databases(conn))
        return {name: database_state(conn, name) for name in names}
