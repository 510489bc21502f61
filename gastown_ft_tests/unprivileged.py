"""Run a function as an unprivileged user: as root every file is readable, so permission tests fork a
child that drops to nobody (uid/gid 65534) first."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any


def run_as_nobody(fn: Callable[[], Any]) -> Any:
    """`fn()`'s JSON-able result, computed in a forked child that dropped to nobody when root;
    `{"error": repr(exception)}` when it raised."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no pytest machinery past this point, always _exit
        code = 0
        try:
            os.close(rfd)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            os.write(wfd, json.dumps(fn()).encode())
        except BaseException as e:  # noqa: BLE001
            os.write(wfd, json.dumps({"error": repr(e)}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    return json.loads(data)
