"""A throwaway MariaDB server for tests: mariadb-install-db into a fresh directory, serve on 127.0.0.1,
tear down. It stands in for a town's Dolt SQL server, which speaks the same MySQL protocol.

    with throwaway_mariadb() as my:          # my: MariaInfo(host, port, user, password, ...)
        pymysql.connect(**my.connect_args())

The binaries (mariadbd, mariadb-install-db; or the mysqld / mysql_install_db names) come from
/usr/sbin, /usr/bin or PATH; with none, `MariaDBUnavailable` is raised (`mariadb_or_skip()` turns that
into a skip). As in pgcluster.py: when the euid is 0 the server runs as an unprivileged user (Debian's
`mysql`, else `nobody`; mariadbd drops to it itself with --user), in a 0755 directory made with mkdtemp
under /tmp, since pytest's own tmp dirs are 0700 and that user could not reach them.

Authentication: every root account gets a random password once the server is up. The server listens
on 127.0.0.1 only, on a port picked by binding port 0, with durability switched off (the data is
thrown away). Character set utf8mb4 with binary collation, as Dolt's default (utf8mb4_0900_bin) orders.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gastown_ft_tests.pgcluster import _alive, free_port

SERVER_NAMES = ("mariadbd", "mysqld")
INSTALL_NAMES = ("mariadb-install-db", "mysql_install_db")
SEARCH_DIRS = ("/usr/sbin", "/usr/bin")
RUN_AS = ("mysql", "nobody")
ER_CANNOT_USER = 1396


class MariaDBUnavailable(RuntimeError):
    """No usable MariaDB server binaries on this machine."""


@dataclass(frozen=True)
class MariaInfo:
    host: str
    port: int
    user: str
    password: str
    base_dir: Path

    def connect_args(self, database: str | None = None) -> dict[str, Any]:
        """Keyword arguments for pymysql.connect."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": database,
            "charset": "utf8mb4",
            "connect_timeout": 10,
        }


def _find(names: tuple[str, ...]) -> Path | None:
    for name in names:
        for d in SEARCH_DIRS:
            if os.access(Path(d) / name, os.X_OK):
                return Path(d) / name
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def find_mariadb() -> tuple[Path, Path] | None:
    """(server, install-db) binaries, or None."""
    server, install = _find(SERVER_NAMES), _find(INSTALL_NAMES)
    return (server, install) if server and install else None


def mariadb_or_skip() -> tuple[Path, Path]:
    import pytest

    found = find_mariadb()
    if found is None:
        pytest.skip(
            "MariaDB server binaries (mariadbd, mariadb-install-db) not found in /usr/sbin, /usr/bin or "
            "on PATH; install mariadb-server (apt-get install mariadb-server) to run the Dolt beads tests"
        )
    return found


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in RUN_AS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise MariaDBUnavailable(f"running as root and no unprivileged user to run MariaDB as (tried {RUN_AS})")


class ThrowawayMariaDB:
    """One server. `start()` returns its MariaInfo; `stop()` ends it and deletes its directory."""

    def __init__(self, *, start_timeout_s: float = 30.0) -> None:
        self.start_timeout_s = start_timeout_s
        self.base_dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.info: MariaInfo | None = None

    def _log_tail(self) -> str:
        log = self.base_dir / "server.log" if self.base_dir else None
        if log and log.is_file():
            return "\n--- server.log ---\n" + log.read_text(errors="replace")[-3000:]
        return ""

    def start(self) -> MariaInfo:
        found = find_mariadb()
        if found is None:
            raise MariaDBUnavailable("mariadbd / mariadb-install-db not found")
        user = _run_as()
        self.base_dir = Path(tempfile.mkdtemp(prefix="gtmaria-", dir=tempfile.gettempdir()))
        self.base_dir.chmod(0o755)
        try:
            return self._start(*found, user)
        except BaseException:
            self.stop()
            raise

    def _start(self, server: Path, install: Path, user: pwd.struct_passwd | None) -> MariaInfo:
        base = self.base_dir
        assert base is not None
        as_user = [f"--user={user.pw_name}"] if user else []
        if user:
            os.chown(base, user.pw_uid, user.pw_gid)
        data = base / "data"
        proc = subprocess.run(
            [
                str(install),
                "--no-defaults",
                f"--datadir={data}",
                *as_user,
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{install.name} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}")
        # The port is free when picked but could be taken before the server binds it: try a few.
        for _ in range(3):
            port = free_port()
            self.proc = subprocess.Popen(
                [
                    str(server),
                    "--no-defaults",
                    f"--datadir={data}",
                    *as_user,
                    f"--port={port}",
                    "--bind-address=127.0.0.1",
                    f"--socket={base / 'sock'}",
                    f"--pid-file={base / 'server.pid'}",
                    f"--log-error={base / 'server.log'}",
                    "--skip-name-resolve",
                    "--skip-log-bin",
                    "--character-set-server=utf8mb4",
                    "--collation-server=utf8mb4_bin",
                    "--innodb-buffer-pool-size=32M",
                    "--innodb-flush-log-at-trx-commit=0",
                    "--skip-innodb-doublewrite",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready(port):
                break
            self._end_process()
            if "already in use" not in self._log_tail():
                raise RuntimeError(f"mariadbd did not start on port {port}{self._log_tail()}")
        else:
            raise RuntimeError(f"mariadbd could not bind a free port{self._log_tail()}")
        password = secrets.token_urlsafe(18)
        self._set_root_password(port, password)
        self.info = MariaInfo("127.0.0.1", port, "root", password, base)
        return self.info

    def _wait_ready(self, port: int) -> bool:
        import pymysql

        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                return False
            try:
                pymysql.connect(host="127.0.0.1", port=port, user="root", connect_timeout=2).close()
                return True
            except pymysql.err.OperationalError:
                time.sleep(0.05)
        return False

    def _set_root_password(self, port: int, password: str) -> None:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=port, user="root", autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT Host FROM mysql.user WHERE User = 'root'")
                for (host,) in cur.fetchall():
                    try:
                        cur.execute("ALTER USER 'root'@%s IDENTIFIED BY %s", (host, password))
                    except pymysql.err.OperationalError as e:
                        # a host-name account (root@<hostname>) is unusable under --skip-name-resolve
                        if e.args[0] != ER_CANNOT_USER:
                            raise
        finally:
            conn.close()

    def _end_process(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server and delete its directory. Safe to call twice."""
        pid = self.proc.pid if self.proc is not None else None
        self._end_process()
        if pid is not None and _alive(pid):  # not our child any more? end it by pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> MariaInfo:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def throwaway_mariadb() -> Iterator[MariaInfo]:
    """A fresh server; stopped and deleted on exit, error or not. Raises MariaDBUnavailable without
    the binaries (see mariadb_or_skip)."""
    server = ThrowawayMariaDB()
    try:
        yield server.start()
    finally:
        server.stop()
