"""The model registry: every export is a numbered version; one of them is promoted, and `serve` uses it.

A plain directory, safe for several processes at once (an fcntl lock around every change, atomic
writes with temp file + os.replace), readable without any of this code:

    <root>/state.json                 {"current": "v3", "promoted": ["v1", "v3"], "next_version": 4}
    <root>/history.jsonl              one event a line: register, promote, rollback (who, when, what)
    <root>/versions/v3/manifest.json  what the exporter said (corpus, base model, eval) + file sha256s
    <root>/versions/v3/bundle/        the export itself: merged/ (HF model dir), model.gguf, Modelfile, ...

`register` copies the export into the registry (so a later export can never change a registered
version) and returns the existing version when the same files were registered before. `promote`
refuses a version whose evaluation did not pass or whose files no longer match their sha256.
`rollback` goes back to the version promoted before the current one.

The manifest an exporter hands to `register` (every key optional; missing ones are recorded as such):

    {"created": ISO time, "corpus_version": str, "base_model": {"name": str, "fingerprint": str},
     "eval": {"passed": bool, "metrics": {...}}, "files": {relpath: sha256}  (checked when given)}
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gastown_ft import atomic
from gastown_ft.artifacts import ArtifactStore
from gastown_ft.errors import GastownFTError

STATE_FILE = "state.json"
HISTORY_FILE = "history.jsonl"
MANIFEST_FILE = "manifest.json"
BUNDLE_DIR = "bundle"
MERGED_DIR = "merged"  # inside a bundle: the Hugging Face model directory that `serve` loads
SCHEMA = 1
_VERSION_RE = re.compile(r"^[vV]?(\d+)$")


def registry_root(settings) -> Path:
    """Where the registry of these settings lives: <artifacts>/registry."""
    return ArtifactStore(settings.artifacts.dir).registry_dir()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _write_json_atomic(path: Path, data: Any) -> None:
    atomic.write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_tree(root: Path) -> dict[str, dict[str, Any]]:
    """{relative posix path: {"sha256", "bytes"}} for every regular file under `root`."""
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = {"sha256": file_sha256(p), "bytes": p.stat().st_size}
    return out


def content_id(files: dict[str, dict[str, Any]]) -> str:
    """One hash over the names and contents of a bundle's files: equal bundles, equal id."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]['sha256']}\n".encode())
    return "sha256:" + h.hexdigest()


# -- the embedded base model --------------------------------------------------------------------------

EMBEDDED_BASE_NOTICE = (
    "its base model is the tiny embedded model built in this project{size}: "
    "not a real language model; for tests"
)


def is_embedded_base(base: Any) -> bool:
    """Whether a base-model record (a manifest's or provenance's `base_model`) is the embedded model.

    Records carry `source` ("embedded" | "preset" | "local" | "hub"); older ones only `name`."""
    if isinstance(base, str):
        return base == "embedded"
    if not isinstance(base, dict):
        return False
    source = base.get("source")
    return source == "embedded" or (source is None and base.get("name") == "embedded")


def _parameters_text(parameters: Any) -> str:
    if not isinstance(parameters, int) or isinstance(parameters, bool) or parameters <= 0:
        return " (a few million parameters)"
    return (
        f" ({parameters / 1e6:.1f}M parameters)" if parameters >= 100_000 else f" ({parameters:,} parameters)"
    )


def embedded_base_notice(base: Any, parameters: Any = None) -> str | None:
    """The plain warning to show wherever a model built on the embedded base is listed or served."""
    if not is_embedded_base(base):
        return None
    return EMBEDDED_BASE_NOTICE.format(size=_parameters_text(parameters))


def model_base(model_dir: str | os.PathLike) -> tuple[dict[str, Any] | None, int | None]:
    """(base-model record, parameter count) of an exported model directory, from what the export wrote.

    A registered version's manifest (`<version>/manifest.json` above `bundle/merged`) first, else the
    merge report beside the weights (`merge.json`; exports record `base_model` there too).
    (None, None) when neither says."""
    merged = Path(model_dir)
    manifest_file = merged.parent.parent / MANIFEST_FILE
    if merged.name == MERGED_DIR and merged.parent.name == BUNDLE_DIR and manifest_file.is_file():
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
            base = manifest.get("base_model")
            if base:
                return base, (manifest.get("merge") or {}).get("parameters")
        except (OSError, ValueError, AttributeError):
            pass
    try:
        report = json.loads((merged / "merge.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    if not isinstance(report, dict):
        return None, None
    return report.get("base_model"), report.get("parameters")


def normalize_version(version: str | int) -> str:
    m = _VERSION_RE.match(str(version).strip())
    if not m:
        raise GastownFTError(
            f"{version!r} is not a version id", hint="versions look like v3; see `gastown-ft models list`"
        )
    return f"v{int(m.group(1))}"


@dataclass(frozen=True)
class ModelVersion:
    """One registered export."""

    version: str
    path: Path  # <root>/versions/<version>
    manifest: dict[str, Any] = field(repr=False)

    @property
    def number(self) -> int:
        return int(self.version[1:])

    @property
    def bundle_dir(self) -> Path:
        return self.path / BUNDLE_DIR

    @property
    def merged_dir(self) -> Path:
        return self.bundle_dir / MERGED_DIR

    @property
    def eval_passed(self) -> bool:
        ev = self.manifest.get("eval")
        return isinstance(ev, dict) and ev.get("passed") is True

    @property
    def created(self) -> str | None:
        return self.manifest.get("created")

    @property
    def base_is_embedded(self) -> bool:
        return is_embedded_base(self.manifest.get("base_model"))

    @property
    def base_notice(self) -> str | None:
        """A plain warning when this version's base is the tiny embedded model, else None."""
        merge = self.manifest.get("merge")
        return embedded_base_notice(
            self.manifest.get("base_model"), merge.get("parameters") if isinstance(merge, dict) else None
        )

    @property
    def size_bytes(self) -> int:
        return sum(int(f.get("bytes", 0)) for f in self.manifest.get("files", {}).values())

    def to_dict(self) -> dict[str, Any]:
        return {**self.manifest, "version": self.version, "path": str(self.path)}


class Registry:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    # -- reading ---------------------------------------------------------------------------------------

    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    def _state(self) -> dict[str, Any]:
        path = self.root / STATE_FILE
        if not path.is_file():
            return {"schema": SCHEMA, "current": None, "promoted": [], "next_version": 1}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise GastownFTError(
                f"the registry state {path} is unreadable: {e}",
                hint=f"history.jsonl beside it records every promotion; restore {STATE_FILE} from it",
            ) from None

    def _load(self, version: str) -> ModelVersion | None:
        path = self.versions_dir / version
        try:
            manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as e:
            raise GastownFTError(
                f"the manifest of {version} ({path / MANIFEST_FILE}) is unreadable: {e}"
            ) from None
        return ModelVersion(version=version, path=path, manifest=manifest)

    def versions(self) -> list[ModelVersion]:
        """Every registered version, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        names = [p.name for p in self.versions_dir.iterdir() if _VERSION_RE.match(p.name) and p.is_dir()]
        found = (self._load(n) for n in sorted(names, key=lambda n: int(n[1:])))
        return [v for v in found if v is not None]

    def get(self, version: str | int) -> ModelVersion:
        name = normalize_version(version)
        found = self._load(name)
        if found is None:
            known = [v.version for v in self.versions()]
            raise GastownFTError(
                f"no model version {name} in the registry at {self.root}",
                hint=f"registered: {', '.join(known)}"
                if known
                else "export a model first; none is registered",
            )
        return found

    def current(self) -> ModelVersion | None:
        """The promoted version (what `serve` uses), or None before the first promotion."""
        name = self._state().get("current")
        return self.get(name) if name else None

    def history(self) -> list[dict[str, Any]]:
        """Every register / promote / rollback event, oldest first."""
        path = self.root / HISTORY_FILE
        if not path.is_file():
            return []
        events = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: the others still count
        return events

    def verify(self, version: str | int) -> list[str]:
        """What is wrong with a version's files (missing, changed, no model): empty when intact."""
        mv = self.get(version)
        problems = []
        files = mv.manifest.get("files") or {}
        if not any(rel.startswith(f"{MERGED_DIR}/") for rel in files):
            problems.append(f"the bundle has no {MERGED_DIR}/ model directory")
        for rel, meta in sorted(files.items()):
            p = mv.bundle_dir / rel
            if not p.is_file():
                problems.append(f"{rel} is missing")
            elif p.stat().st_size != meta.get("bytes") or file_sha256(p) != meta.get("sha256"):
                problems.append(f"{rel} has changed since registration (sha256 mismatch)")
        return problems

    # -- changing --------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _log(self, event: dict[str, Any]) -> None:
        line = json.dumps({"at": _now(), "by": _who(), **event}, sort_keys=True, default=str)
        with (self.root / HISTORY_FILE).open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _find_content(self, cid: str) -> ModelVersion | None:
        return next((v for v in self.versions() if v.manifest.get("content_id") == cid), None)

    def register(self, bundle_dir: str | os.PathLike, manifest: dict[str, Any], *, move: bool = False) -> str:
        """Add an export as the next version and return its id (or the id it already has).

        `move=True` moves the bundle in (instant on the same filesystem) instead of copying it.
        """
        bundle = Path(bundle_dir)
        if not (bundle / MERGED_DIR / "config.json").is_file():
            raise GastownFTError(
                f"{bundle} is not an export bundle: it has no {MERGED_DIR}/config.json",
                hint="register the directory the export step wrote (it holds merged/, model.gguf, ...)",
            )
        files = hash_tree(bundle)
        _check_claimed_hashes(manifest.get("files"), files, bundle)
        cid = content_id(files)
        existing = self._find_content(cid)
        if existing is not None:
            return existing.version

        staging = self.root / ".staging" / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            # Copy (or move) outside the lock: a big model must not block promotions meanwhile.
            if move:
                shutil.move(str(bundle), staging / BUNDLE_DIR)
            else:
                shutil.copytree(bundle, staging / BUNDLE_DIR)
            atomic.fsync_tree(staging)  # the version is on disk before it is listed (and outside the lock)
            with self._locked():
                existing = self._find_content(cid)  # another process may have registered it meanwhile
                if existing is not None:
                    if move:  # give the caller its bundle back untouched
                        shutil.move(str(staging / BUNDLE_DIR), bundle)
                    return existing.version
                state = self._state()
                taken = [v.number for v in self.versions()]
                number = max([int(state.get("next_version", 1)), *(n + 1 for n in taken)])
                version = f"v{number}"
                record = {
                    **manifest,
                    "created": manifest.get("created") or _now(),
                    "version": version,
                    "registered_at": _now(),
                    "content_id": cid,
                    "files": files,
                }
                _write_json_atomic(staging / MANIFEST_FILE, record)
                self.versions_dir.mkdir(parents=True, exist_ok=True)
                os.rename(staging, self.versions_dir / version)
                atomic.fsync_dir(self.versions_dir)
                _write_json_atomic(self.root / STATE_FILE, {**state, "next_version": number + 1})
                self._log({"event": "register", "version": version, "content_id": cid})
                return version
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _require_servable(self, mv: ModelVersion, action: str) -> None:
        problems = self.verify(mv.version)
        if problems:
            raise GastownFTError(
                f"cannot {action} {mv.version}: its files are damaged ({'; '.join(problems[:3])}"
                + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
                + ")",
                hint="export again and promote the new version; `gastown-ft models list` shows the others",
            )

    def promote(self, version: str | int) -> ModelVersion:
        """Make `version` the one `serve` uses. Needs a passing evaluation and intact files."""
        with self._locked():
            mv = self.get(version)
            if not mv.eval_passed:
                ev = mv.manifest.get("eval") or {}
                why = "its evaluation did not pass" if "passed" in ev else "it has no evaluation result"
                raise GastownFTError(
                    f"cannot promote {mv.version}: {why}" + _metrics_summary(ev.get("metrics")),
                    hint="only a version whose evaluation passed can be promoted; "
                    "`gastown-ft models show " + mv.version + "` shows the result",
                )
            self._require_servable(mv, "promote")
            state = self._state()
            previous = state.get("current")
            if previous == mv.version:
                return mv
            promoted = [*state.get("promoted", []), mv.version]
            _write_json_atomic(self.root / STATE_FILE, {**state, "current": mv.version, "promoted": promoted})
            self._log({"event": "promote", "version": mv.version, "previous": previous})
            return mv

    def rollback(self) -> ModelVersion:
        """Go back to the version promoted before the current one."""
        with self._locked():
            state = self._state()
            promoted = list(state.get("promoted", []))
            if len(promoted) < 2:
                raise GastownFTError(
                    "nothing to roll back to: "
                    + (
                        f"{promoted[0]} is the only version ever promoted" if promoted else "none is promoted"
                    ),
                    hint="promote a specific version with `gastown-ft models promote VERSION`",
                )
            target = self.get(promoted[-2])
            self._require_servable(target, "roll back to")
            left = promoted.pop()
            _write_json_atomic(
                self.root / STATE_FILE, {**state, "current": target.version, "promoted": promoted}
            )
            self._log({"event": "rollback", "version": target.version, "previous": left})
            return target

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest `keep` versions; never the promoted one nor the one `rollback`
        would return to. Returns the versions deleted (oldest first)."""
        if keep < 1:
            raise ValueError("keep must be at least 1")
        with self._locked():
            state = self._state()
            promoted = list(state.get("promoted", []))
            protected = set(promoted[-2:])
            versions = self.versions()
            doomed = [
                v.version for v in versions[: max(0, len(versions) - keep)] if v.version not in protected
            ]
            if not doomed:
                return []
            trash = self.root / ".staging" / f"pruned-{uuid.uuid4().hex}"
            trash.mkdir(parents=True)
            for name in doomed:  # out of versions/ in one rename each, then deleted at leisure
                os.rename(self.versions_dir / name, trash / name)
            # Rollback skips what is gone and goes to the newest earlier version that is still here.
            promoted = [p for p in promoted if p not in doomed]
            _write_json_atomic(self.root / STATE_FILE, {**state, "promoted": promoted})
            self._log({"event": "prune", "version": ",".join(doomed)})
        shutil.rmtree(trash, ignore_errors=True)
        return doomed


def _check_claimed_hashes(claimed: Any, files: dict[str, dict[str, Any]], bundle: Path) -> None:
    """The exporter's own sha256s, when it gave them, must match what is on disk now."""
    if not claimed:
        return
    bad = []
    for rel, meta in claimed.items():
        want = meta.get("sha256") if isinstance(meta, dict) else meta
        got = files.get(rel, {}).get("sha256")
        if got != want:
            bad.append(rel if got else f"{rel} (missing)")
    if bad:
        raise GastownFTError(
            f"the export at {bundle} does not match its own manifest: {', '.join(bad[:5])}",
            hint="the bundle changed or was cut short after export; run the export again",
        )


def _metrics_summary(metrics: Any) -> str:
    if not isinstance(metrics, dict) or not metrics:
        return ""
    items = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(metrics.items())[:4]]
    return " (" + ", ".join(items) + ")"
