"""`bd` and `gt` stand-ins for tests: executables on PATH that record their argv and answer like the real
ones (bd's `--json` object contract from beads docs/JSON_SCHEMA.md; plain text otherwise).

Each call appends `{"argv": [...], "cwd": ...}` to the log file named by $FAKE_TOWN_LOG. `bd create`
answers a new id with the prefix $FAKE_BD_PREFIX (default hq); $FAKE_BD_FAIL makes bd exit 1.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

SCRIPT = r"""#!{python}
import json, os, sys, time, hashlib
cli = os.path.basename(sys.argv[0])
log = os.environ["FAKE_TOWN_LOG"]
with open(log, "a", encoding="utf-8") as f:
    f.write(json.dumps({{"argv": [cli, *sys.argv[1:]], "cwd": os.getcwd()}}) + "\n")
args = sys.argv[1:]
if cli == "bd":
    if os.environ.get("FAKE_BD_FAIL"):
        sys.stderr.write("Error: failed to connect to dolt server at 127.0.0.1:3307\n")
        sys.exit(1)
    if args[:1] == ["create"]:
        n = sum(1 for _ in open(log, encoding="utf-8"))
        bead = os.environ.get("FAKE_BD_PREFIX", "hq") + "-" + hashlib.sha1(str(n).encode()).hexdigest()[:5]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(json.dumps({{"schema_version": 1, "id": bead, "title": args[1], "status": "open",
                          "priority": 2, "issue_type": "task", "created_at": now}}))
    elif args[:2] == ["comments", "add"]:
        print(f"Comment added to {{args[2]}}")
    elif args[:1] == ["update"]:
        print(f"\u2713 Updated issue: {{args[1]}}")
    elif args[:1] == ["close"]:
        print(f"\u2713 Closed {{args[1]}}")
elif cli == "gt":
    if args[:2] == ["mail", "send"]:
        print(f"\u2713 Message sent to {{args[2]}}")
"""


def install_fake_clis(bin_dir: Path, log: Path, monkeypatch, prefix: str = "hq") -> None:
    """Put `bd` and `gt` in `bin_dir`, first on PATH, logging to `log`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("bd", "gt"):
        path = bin_dir / name
        path.write_text(SCRIPT.format(python=sys.executable))
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_TOWN_LOG", str(log))
    monkeypatch.setenv("FAKE_BD_PREFIX", prefix)


def recorded(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
