"""A throwaway PostgreSQL cluster for tests: initdb into a fresh directory, serve on 127.0.0.1, tear down.

    with throwaway_postgres(tmp_dir) as pg:      # pg: PgInfo(host, port, user, password, db, url, ...)
        psycopg2.connect(pg.url)

The server binaries come from the highest /usr/lib/postgresql/*/bin that has initdb and pg_ctl, else
from PATH; with neither, `PostgresUnavailable` is raised (`pg_bin_or_skip()` turns that into a skip).

initdb and postgres refuse to run as root. When the euid is 0 they run as an unprivileged system user
(`gtpg`, created on first use with useradd; `nobody` if that fails) through `runuser -u USER --` (or
`setpriv`), and the cluster lives in a 0755 directory made with mkdtemp under /tmp, since pytest's own
tmp dirs (/tmp/pytest-of-root/...) are 0700 and the server user could not reach them.

Authentication: scram-sha-256 for every connection, TCP and socket alike; the superuser's password is
random per cluster. The server listens on 127.0.0.1 only, on a port picked by binding port 0, with its
unix socket in the cluster directory. Durability is switched off (fsync, synchronous_commit,
full_page_writes): the data is thrown away anyway.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

PG_LIB_GLOB = "/usr/lib/postgresql/*/bin"
PG_USER_ENV = "GASTOWN_FT_PG_USER"  # run the server as this user when root (default: gtpg, else nobody)
PG_BIN_ENV = "GASTOWN_FT_PG_BIN"  # explicit bin dir, overrides the search
DEFAULT_SYSTEM_USER = "gtpg"
SUPERUSER = "gastown"
DEFAULT_DB = "dagster"
_MAX_SOCKET_DIR_LEN = 80  # sun_path is 108 bytes; the socket file name adds ~17


class PostgresUnavailable(RuntimeError):
    """No usable PostgreSQL server binaries (or no way to run them) on this machine."""


@dataclass(frozen=True)
class PgInfo:
    host: str
    port: int
    user: str
    password: str
    db: str
    url: str  # libpq form, postgresql://user:pw@127.0.0.1:port/db (psycopg2.connect accepts it)
    data_dir: Path | None = None
    base_dir: Path | None = None
    bin_dir: Path | None = None

    @property
    def sqlalchemy_url(self) -> str:
        """The URL for SQLAlchemy. 2.1 defaults `postgresql://` to psycopg 3, so the driver is named."""
        return self.url.replace("postgresql://", "postgresql+psycopg2://", 1)

    def dsn(self, db: str | None = None) -> dict[str, object]:
        """Keyword arguments for psycopg2.connect."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": db or self.db,
        }

    def env(self, prefix: str = "DAGSTER_PG_") -> dict[str, str]:
        """The DAGSTER_PG_* variables deploy/dagster.yaml reads."""
        return {
            f"{prefix}HOST": self.host,
            f"{prefix}PORT": str(self.port),
            f"{prefix}USERNAME": self.user,
            f"{prefix}PASSWORD": self.password,
            f"{prefix}DB": self.db,
        }


def _pg_url(host: str, port: int, user: str, password: str, db: str) -> str:
    return (
        f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{quote(db, safe='')}"
    )


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/15/bin -> (15,); 9.6 -> (9, 6); anything else sorts first
    return tuple(int(p) for p in re.findall(r"\d+", path.parent.name)) or (0,)


def find_pg_bin() -> Path | None:
    """The directory holding initdb and pg_ctl: $GASTOWN_FT_PG_BIN, the newest Debian one, or PATH's."""
    explicit = os.environ.get(PG_BIN_ENV)
    candidates: list[Path] = [Path(explicit)] if explicit else []
    candidates += sorted((Path(p) for p in glob.glob(PG_LIB_GLOB)), key=_version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for d in candidates:
        if all(os.access(d / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def pg_bin_or_skip() -> Path:
    """find_pg_bin(), or skip the calling test with the reason."""
    import pytest

    found = find_pg_bin()
    if found is None:
        pytest.skip(
            f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in {PG_LIB_GLOB} "
            "or on PATH; install postgresql (apt-get install postgresql) to run this test"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --- running as someone else ------------------------------------------------------------------------


def _ensure_system_user() -> pwd.struct_passwd:
    """The unprivileged user the server runs as when we are root."""
    wanted = os.environ.get(PG_USER_ENV)
    names = [wanted] if wanted else [DEFAULT_SYSTEM_USER, "nobody"]
    for name in names:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
        if name == DEFAULT_SYSTEM_USER and shutil.which("useradd"):
            subprocess.run(
                ["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", name],
                capture_output=True,
                text=True,
                check=False,
            )
            # a concurrent session may have made it between the lookup and useradd: look again either way
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(name)
    raise PostgresUnavailable(
        f"running as root and no unprivileged user to run PostgreSQL as (tried {names})"
    )


def _drop_privileges_prefix(user: pwd.struct_passwd) -> list[str]:
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", user.pw_name, "--"]
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
    raise PostgresUnavailable(
        "running as root, and neither runuser nor setpriv is available to run "
        "initdb/postgres as an unprivileged user"
    )


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


# --- the cluster --------------------------------------------------------------------------------------


class ThrowawayPostgres:
    """One cluster. `start()` returns its PgInfo; `stop()` kills it and deletes its directory."""

    def __init__(
        self,
        tmp_dir: str | os.PathLike | None = None,
        *,
        bin_dir: Path | None = None,
        db: str = DEFAULT_DB,
        start_timeout_s: int = 60,
    ):
        self.tmp_dir = Path(tmp_dir) if tmp_dir is not None else None
        self.bin_dir = bin_dir
        self.db = db
        self.start_timeout_s = start_timeout_s
        self.base_dir: Path | None = None
        self.data_dir: Path | None = None
        self.info: PgInfo | None = None
        self._prefix: list[str] = []
        self._env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        for var in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGDATA", "PGSERVICE"):
            self._env.pop(var, None)

    # helpers
    def _run(
        self, args: list[str], *, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            self._prefix + args,
            cwd=self.base_dir,
            env=self._env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed (exit {proc.returncode}):\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}{self._log_tail()}"
            )
        return proc

    def _log_tail(self) -> str:
        log = self.base_dir / "postgres.log" if self.base_dir else None
        if log and log.is_file():
            return "\n--- postgres.log ---\n" + log.read_text(errors="replace")[-3000:]
        return ""

    def _make_base_dir(self) -> Path:
        # root: the server user must traverse every parent, and pytest's tmp dirs are 0700 -> use /tmp.
        # anyone: the unix socket path must fit in sun_path, so a deep tmp_dir also falls back to /tmp.
        parent = self.tmp_dir
        if os.geteuid() == 0 or parent is None or len(str(parent)) > _MAX_SOCKET_DIR_LEN - 30:
            parent = Path(tempfile.gettempdir())
        parent.mkdir(parents=True, exist_ok=True)
        base = Path(tempfile.mkdtemp(prefix="gtpg-", dir=parent))
        base.chmod(0o755)
        return base

    def start(self) -> PgInfo:
        bin_dir = self.bin_dir or find_pg_bin()
        if bin_dir is None:
            raise PostgresUnavailable(f"initdb/pg_ctl/postgres not found in {PG_LIB_GLOB} or on PATH")
        self.bin_dir = bin_dir
        if os.geteuid() == 0:
            user = _ensure_system_user()
            self._prefix = _drop_privileges_prefix(user)
        else:
            user = None

        self.base_dir = self._make_base_dir()
        try:
            return self._start(bin_dir, user)
        except BaseException:
            self.stop()
            raise

    def _start(self, bin_dir: Path, user: pwd.struct_passwd | None) -> PgInfo:
        assert self.base_dir is not None
        base = self.base_dir
        data = base / "data"
        sock = base / "sock"
        sock.mkdir()
        password = secrets.token_urlsafe(18)
        pwfile = base / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if user is not None:
            _chown_tree(base, user.pw_uid, user.pw_gid)
        self.data_dir = data

        self._run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        pwfile.unlink()
        with (data / "postgresql.conf").open("a") as conf:  # appending keeps the file's owner
            conf.write(
                "\n# gastown_ft_tests.pgcluster\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{sock}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 100\nshared_buffers = 32MB\n"
            )

        # The port is free when picked but could be taken before postgres binds it: try a few.
        last_err: Exception | None = None
        for _ in range(3):
            port = free_port()
            proc = self._run(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(base / "postgres.log"),
                    "-w",
                    "-t",
                    str(self.start_timeout_s),
                    "-o",
                    f"-p {port}",
                    "start",
                ],
                timeout=self.start_timeout_s + 30,
                check=False,
            )
            if proc.returncode == 0:
                break
            last_err = RuntimeError(
                f"pg_ctl start failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n"
                f"{proc.stderr[-2000:]}{self._log_tail()}"
            )
            if "could not bind" not in self._log_tail() and "already in use" not in self._log_tail():
                raise last_err
        else:
            assert last_err is not None
            raise last_err

        info = PgInfo(
            host="127.0.0.1",
            port=port,
            user=SUPERUSER,
            password=password,
            db="postgres",
            url=_pg_url("127.0.0.1", port, SUPERUSER, password, "postgres"),
            data_dir=data,
            base_dir=base,
            bin_dir=bin_dir,
        )
        self.info = create_database(info, self.db)
        return self.info

    def _postmaster_pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid" if self.data_dir else None
        try:
            return int(pidfile.read_text().splitlines()[0]) if pidfile else None
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Stop the server (immediate mode) and delete the cluster directory. Safe to call twice."""
        if self.data_dir is not None and (self.data_dir / "postmaster.pid").exists() and self.bin_dir:
            pid = self._postmaster_pid()
            try:
                self._run(
                    [
                        str(self.bin_dir / "pg_ctl"),
                        "-D",
                        str(self.data_dir),
                        "-m",
                        "immediate",
                        "-w",
                        "-t",
                        "30",
                        "stop",
                    ],
                    timeout=60,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                pass
            if pid is not None and _alive(pid):  # pg_ctl failed: the postmaster is ours, end it by pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            if self.base_dir.exists():  # e.g. a file appeared while deleting: one more go, loudly
                shutil.rmtree(self.base_dir)
            self.base_dir = None

    def __enter__(self) -> PgInfo:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


@contextlib.contextmanager
def throwaway_postgres(
    tmp_dir: str | os.PathLike | None = None, *, bin_dir: Path | None = None, db: str = DEFAULT_DB
) -> Iterator[PgInfo]:
    """A fresh cluster with database `db` (default "dagster"); stopped and deleted on exit, error or not.

    Raises PostgresUnavailable when there are no server binaries (see pg_bin_or_skip)."""
    cluster = ThrowawayPostgres(tmp_dir, bin_dir=bin_dir, db=db)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def create_database(pg: PgInfo, name: str) -> PgInfo:
    """CREATE DATABASE `name` on pg's server; returns a PgInfo pointing at it."""
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(**pg.dsn(), connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()
    return replace(pg, db=name, url=_pg_url(pg.host, pg.port, pg.user, pg.password, name))
