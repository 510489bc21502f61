"""Claude Code session transcripts: one document per segment of a conversation thread.

Where: `<claude_projects_dir>/<encoded cwd>/<session-uuid>.jsonl` (the encoded cwd is the absolute cwd
with every character outside [A-Za-z0-9] replaced by "-"); the projects of the town (their encoded
name starts with the encoded town root) or all of them with `town.transcripts_all_projects`; also
`*.jsonl` files of the town walk that lie under a `.claude/projects/` directory or in
`town.extra_paths` and look like transcripts. Sub-agent files (`agent-*.jsonl`, also in
`<session>/subagents/`) are read the same way: their lines are all sidechain lines.

A file's lines form a tree (uuid / parentUuid; a compaction boundary links back through
logicalParentUuid). The main thread is the chain from the last non-sidechain line back to its
root; each sidechain root (a sub-agent run) gives a thread of its own, the chain from the last line
of its subtree back to it. Lines on no thread (abandoned retries, edits of earlier prompts) are left
out and counted in meta.

Streaming: a first pass keeps a small index per line (offset, length, flags, parent) in arrays; a
second pass seeks to the lines of one thread at a time and emits it in segments of at most
SEGMENT_MESSAGES messages or SEGMENT_CHARS characters of text, so memory does not grow with the file.
A line over MAX_LINE_BYTES is never loaded: it is quarantined ("line_too_large") and, when its uuid
can be read from its first and last bytes, kept in the tree as a placeholder so its thread stays whole.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gastown_ft.corpus.documents import Document, ReadLog
from gastown_ft.corpus.files import SNIFF_BYTES, check_file, file_mtime, looks_binary, os_error_reason
from gastown_ft.corpus.roles import role_from_path, role_from_text
from gastown_ft.corpus.scan import SKIP_DIRS, TownScan

logger = logging.getLogger(__name__)

SOURCE = "transcripts"
PROVENANCE_PREFIX = "claude-projects"  # provenance paths of files under claude_projects_dir

MAX_LINE_BYTES = 8 * 1024 * 1024  # a longer line is quarantined, never loaded
LINE_CHUNK = 1024 * 1024  # lines are read in pieces of this size
SEGMENT_MESSAGES = 200
SEGMENT_CHARS = 256 * 1024
MAX_BLOCK_CHARS = 64_000  # one text / tool result / thinking block; longer ones are cut and marked
INPUT_STRING_CHARS = 2_000  # strings inside an oversized tool_use input are cut to this
PRIME_LINES = 12  # the first lines whose text may hold `gt prime` output
PRIME_CHARS = 64 * 1024
MAX_SUMMARIES = 50
SUMMARY_CHARS = 2_000
ENVELOPE_BYTES = 4096  # bytes kept from each end of a too-large line to recover its uuid

KNOWN_TYPES = frozenset(
    {
        "user",
        "assistant",
        "system",
        "summary",
        "attachment",
        "progress",
        "file-history-snapshot",
        "queue-operation",
        "custom-title",
        "tag",
    }
)
MESSAGE_TYPES = ("user", "assistant", "system")
INTERRUPT_MARK = "[Request interrupted by user"

# Per-line flags in the index.
F_SIDE = 1 << 0
F_MSG = 1 << 1  # a user / assistant / system line with something to show
F_TOOL_USE = 1 << 2
F_TOOL_RESULT = 1 << 3
F_TOOL_ERROR = 1 << 4  # the line's last tool_result has is_error
F_API_ERROR = 1 << 5
F_INTERRUPT = 1 << 6
F_COMPACT = 1 << 7  # a compact_boundary or a compaction summary message
F_OVERSIZE = 1 << 8  # a placeholder for a line over MAX_LINE_BYTES
F_ASSISTANT = 1 << 9
F_USER = 1 << 10

_UUID_RE = re.compile(rb'"uuid"\s*:\s*"([^"\\]{1,100})"')
_PARENT_RE = re.compile(rb'"(?:parentUuid|logicalParentUuid)"\s*:\s*"([^"\\]{1,100})"')
_SIDE_RE = re.compile(rb'"isSidechain"\s*:\s*true')
_SESSION_FILE = re.compile(r"^(agent-[A-Za-z0-9_-]+|[0-9a-fA-F]{8}-[0-9a-fA-F-]{27,})\.jsonl$")


# -- bounded line reading (shared with events.py) --------------------------------------------------
@dataclass
class RawLine:
    offset: int
    length: int  # bytes including the newline
    data: bytes | None  # None when the line is over the limit
    complete: bool  # ended with a newline
    head: bytes = b""  # first and last bytes of a too-large line
    tail: bytes = b""


def iter_bounded_lines(
    fh: IO[bytes], max_line: int = MAX_LINE_BYTES, chunk: int = LINE_CHUNK
) -> Iterator[RawLine]:
    """Lines of a binary file with their offsets; a line over `max_line` bytes is skipped, not held."""
    offset = 0
    while True:
        piece = fh.readline(chunk)
        if not piece:
            return
        start, total = offset, len(piece)
        offset += len(piece)
        if piece.endswith(b"\n"):
            yield RawLine(start, total, piece, True)
            continue
        pieces: list[bytes] | None = [piece]
        head, tail = piece[:ENVELOPE_BYTES], piece[-ENVELOPE_BYTES:]
        complete = False
        while True:
            piece = fh.readline(chunk)
            if not piece:
                break
            total += len(piece)
            offset += len(piece)
            tail = (tail + piece[-ENVELOPE_BYTES:])[-ENVELOPE_BYTES:]
            if pieces is not None:
                if total <= max_line:
                    pieces.append(piece)
                else:
                    pieces = None
            if piece.endswith(b"\n"):
                complete = True
                break
        if pieces is not None and total <= max_line:
            yield RawLine(start, total, b"".join(pieces), complete)
        else:
            yield RawLine(start, total, None, complete, head, tail)


def decode_line(data: bytes) -> tuple[str, bool]:
    """(text, had bad bytes): invalid UTF-8 is replaced, never fatal."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace"), True


# -- finding the files ------------------------------------------------------------------------------
def encode_project_dir(path: str | os.PathLike) -> str:
    """Claude Code's directory name for a cwd: every character outside [A-Za-z0-9] becomes '-'."""
    return re.sub(r"[^A-Za-z0-9]", "-", str(path))


def _root_variants(root: Path) -> list[Path]:
    out: list[Path] = []
    for p in (Path(os.path.expanduser(str(root))).absolute(),):
        out.append(p)
        try:
            r = p.resolve()
        except OSError:
            continue
        if r != p:
            out.append(r)
    return out


def is_transcript_candidate(path: Path) -> bool:
    """A file of the town walk this reader may take (content is checked before reading)."""
    return path.suffix == ".jsonl" and "/.claude/projects/" in Path(path).as_posix()


def _looks_like_transcript(path: Path) -> bool:
    """The first lines of the file are Claude Code transcript lines."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64 * 1024)
    except OSError:
        return False
    if looks_binary(head[:SNIFF_BYTES]):
        return False
    for raw in head.split(b"\n")[:5]:
        try:
            obj = json.loads(raw.decode("utf-8", "replace"))
        except ValueError:
            continue
        if isinstance(obj, dict) and (
            "sessionId" in obj
            or ("leafUuid" in obj and obj.get("type") == "summary")
            or ("uuid" in obj and "parentUuid" in obj)
        ):
            return True
    return False


def _under(path: Path, roots: list[Path]) -> bool:
    for r in roots:
        try:
            path.relative_to(r)
            return True
        except ValueError:
            continue
    return False


def _excluded(scan: TownScan, path: Path, prov: str) -> bool:
    return scan.is_excluded(path) or any(fnmatch.fnmatchcase(prov, g) for g in scan.config.exclude)


def _walk_projects(
    scan: TownScan,
    log: ReadLog,
    directory: Path,
    base: Path,
    seen: set[tuple[int, int]],
    out: list[tuple[Path, str]],
) -> None:
    prov_dir = f"{PROVENANCE_PREFIX}/{directory.relative_to(base).as_posix()}"
    try:
        st = directory.stat()
    except OSError as e:
        log.quarantine(SOURCE, prov_dir, os_error_reason(e), f"{type(e).__name__}: {e.strerror or e}")
        return
    key = (st.st_dev, st.st_ino)
    if key in seen:
        log.quarantine(SOURCE, prov_dir, "symlink_loop", "directory reached twice through a symlink")
        return
    seen.add(key)
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as e:
        log.quarantine(SOURCE, prov_dir, os_error_reason(e), f"{type(e).__name__}: {e.strerror or e}")
        return
    for e in entries:
        path = Path(e.path)
        prov = f"{PROVENANCE_PREFIX}/{path.relative_to(base).as_posix()}"
        if e.name in SKIP_DIRS:
            continue
        if _excluded(scan, path, prov):
            log.skip("excluded")
            continue
        try:
            is_dir = e.is_dir()
            if e.is_symlink():
                os.stat(path)  # raises on loops and dangling links
        except OSError as err:
            if e.name.endswith(".jsonl") or e.is_symlink():
                log.quarantine(
                    SOURCE, prov, os_error_reason(err), f"{type(err).__name__}: {err.strerror or err}"
                )
            continue
        if is_dir:
            _walk_projects(scan, log, path, base, seen, out)
        elif e.name.endswith(".jsonl"):
            out.append((path, prov))


def transcript_files(scan: TownScan, log: ReadLog) -> list[tuple[Path, str]]:
    """(path, provenance path) of every transcript to read, each file once, in a stable order."""
    cfg = scan.config
    found: list[tuple[Path, str]] = []
    base = Path(os.path.expanduser(str(cfg.claude_projects_dir)))
    if base.is_dir():
        prefixes = {encode_project_dir(r) for r in _root_variants(scan.root)}
        try:
            projects = sorted(os.scandir(base), key=lambda e: e.name)
        except OSError as e:
            log.quarantine(SOURCE, PROVENANCE_PREFIX, os_error_reason(e), f"{type(e).__name__}: {e}")
            projects = []
        seen: set[tuple[int, int]] = set()
        for e in projects:
            wanted = cfg.transcripts_all_projects or any(
                e.name == p or e.name.startswith(p + "-") for p in prefixes
            )
            if not wanted:
                continue
            try:
                if not e.is_dir():
                    continue
            except OSError:
                continue
            path, prov = Path(e.path), f"{PROVENANCE_PREFIX}/{e.name}"
            if _excluded(scan, path, prov):
                log.skip("excluded")
                continue
            _walk_projects(scan, log, path, base, seen, found)

    extra = [Path(os.path.expanduser(str(p))) for p in cfg.extra_paths]

    def candidate(p: Path) -> bool:
        return p.suffix == ".jsonl" and (is_transcript_candidate(p) or _under(p, extra))

    for path in scan.matching(candidate, log, SOURCE):
        if is_transcript_candidate(path) or _SESSION_FILE.match(path.name) or _looks_like_transcript(path):
            found.append((path, scan.rel(path)))

    out: list[tuple[Path, str]] = []
    seen_files: set[str] = set()
    for path, prov in found:
        try:
            ident = str(path.resolve())
        except OSError:
            ident = str(path)
        if ident in seen_files:
            continue
        seen_files.add(ident)
        out.append((path, prov))
    return sorted(out, key=lambda t: t[1])


# -- content helpers ----------------------------------------------------------------------------------
def _cap(s: str, limit: int = MAX_BLOCK_CHARS) -> tuple[str, bool]:
    if len(s) <= limit:
        return s, False
    return s[:limit] + f"\n… [truncated {len(s) - limit} chars]", True


def _shrink(obj: Any, depth: int = 0) -> Any:
    """A tool input with long strings and long lists cut, for inputs too large to keep whole."""
    if isinstance(obj, str):
        return _cap(obj, INPUT_STRING_CHARS)[0]
    if depth > 20:
        return "…"
    if isinstance(obj, dict):
        return {str(k): _shrink(v, depth + 1) for k, v in list(obj.items())[:200]}
    if isinstance(obj, list):
        return [_shrink(v, depth + 1) for v in obj[:100]]
    return obj


def _strings(obj: Any, budget: int, out: list[str], depth: int = 0) -> int:
    """Collect string values of a JSON value, depth-first, up to `budget` characters."""
    if budget <= 0 or depth > 12:
        return budget
    if isinstance(obj, str):
        out.append(obj[:budget])
        return budget - len(out[-1])
    if isinstance(obj, dict):
        for v in obj.values():
            budget = _strings(v, budget, out, depth + 1)
    elif isinstance(obj, list):
        for v in obj:
            budget = _strings(v, budget, out, depth + 1)
    return budget


def _tool_result_text(content: Any) -> tuple[str, int]:
    """A tool result's content flattened to text, with the number of images it held."""
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content, 0
    if isinstance(content, list):
        parts, images = [], 0
        for b in content:
            if isinstance(b, dict):
                if b.get("type") == "text" and isinstance(b.get("text"), str):
                    parts.append(b["text"])
                elif b.get("type") in ("image", "document"):
                    images += 1
                    parts.append(f"[{b.get('type')}]")
                else:
                    bits: list[str] = []
                    _strings(b, MAX_BLOCK_CHARS, bits)
                    parts.append(" ".join(bits))
            elif isinstance(b, str):
                parts.append(b)
        return "\n".join(parts), images
    return json.dumps(content, ensure_ascii=False, default=str), 0


def normalize_block(b: Any) -> dict[str, Any]:
    """One content block as kept in meta: tool calls structured, thinking marked, images elided."""
    if isinstance(b, str):
        text, cut = _cap(b)
        return {"type": "text", "text": text, **({"truncated": True} if cut else {})}
    if not isinstance(b, dict):
        return {"type": "unknown", "text": _cap(json.dumps(b, default=str))[0]}
    t = b.get("type")
    if t == "text":
        text, cut = _cap(str(b.get("text") or ""))
        return {"type": "text", "text": text, **({"truncated": True} if cut else {})}
    if t == "thinking":
        text, cut = _cap(str(b.get("thinking") or ""))
        return {"type": "thinking", "thinking": text, **({"truncated": True} if cut else {})}
    if t == "redacted_thinking":
        return {"type": "redacted_thinking"}
    if t == "tool_use":
        inp = b.get("input")
        block = {"type": "tool_use", "id": b.get("id"), "name": b.get("name"), "input": inp}
        try:
            size = len(json.dumps(inp, ensure_ascii=False, default=str))
        except (TypeError, ValueError):
            size = MAX_BLOCK_CHARS + 1
        if size > MAX_BLOCK_CHARS:
            block["input"] = _shrink(inp)
            block["truncated"] = True
        return block
    if t == "tool_result":
        text, images = _tool_result_text(b.get("content"))
        text, cut = _cap(text)
        block = {
            "type": "tool_result",
            "tool_use_id": b.get("tool_use_id"),
            "content": text,
            "is_error": b.get("is_error") is True,
        }
        if images:
            block["images"] = images
        if cut:
            block["truncated"] = True
        return block
    if t in ("image", "document"):
        src = b.get("source") if isinstance(b.get("source"), dict) else {}
        return {"type": t, "placeholder": True, "media_type": src.get("media_type")}
    bits: list[str] = []
    _strings({k: v for k, v in b.items() if k not in ("type", "signature", "data")}, MAX_BLOCK_CHARS, bits)
    return {"type": str(t) if t else "unknown", "unknown": True, "text": " ".join(bits)}


def render_block(b: dict[str, Any]) -> str:
    t = b.get("type")
    if t == "text":
        return b.get("text", "")
    if t == "thinking":
        return f"[thinking] {b.get('thinking', '')}"
    if t == "redacted_thinking":
        return "[thinking redacted]"
    if t == "tool_use":
        inp = json.dumps(b.get("input"), ensure_ascii=False, default=str)
        return f"[tool_use {b.get('name')}] {inp}"
    if t == "tool_result":
        tag = "[tool_result error]" if b.get("is_error") else "[tool_result]"
        return f"{tag} {b.get('content', '')}"
    if b.get("placeholder"):
        return f"[{t}]"
    if t == "omitted":
        return f"[line omitted: {b.get('bytes')} bytes, over the {MAX_LINE_BYTES} byte limit]"
    return f"[{t}] {b.get('text', '')}".rstrip()


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [normalize_block(content)] if content else []
    if isinstance(content, list):
        return [normalize_block(b) for b in content]
    return [normalize_block(json.dumps(content, ensure_ascii=False, default=str))]


def _is_api_error(obj: dict[str, Any], t: str, msg: dict[str, Any]) -> bool:
    if obj.get("isApiErrorMessage") is True or t == "error":
        return True
    if t == "system" and (obj.get("subtype") == "api_error" or obj.get("level") == "error"):
        return True
    if t == "assistant" and msg.get("model") == "<synthetic>":
        c = msg.get("content")
        first = (
            c
            if isinstance(c, str)
            else next((b.get("text") for b in c if isinstance(b, dict) and b.get("type") == "text"), None)
            if isinstance(c, list)
            else None
        )
        return isinstance(first, str) and first.startswith("API Error")
    return False


def line_flags(obj: dict[str, Any]) -> int:
    """The index flags of one parsed line."""
    t = obj.get("type")
    f = F_SIDE if obj.get("isSidechain") is True else 0
    msg = obj.get("message") if isinstance(obj.get("message"), dict) else {}
    content = msg.get("content")
    if _is_api_error(obj, t, msg):
        f |= F_API_ERROR
    if t == "system":
        if obj.get("subtype") == "compact_boundary":
            f |= F_COMPACT | F_MSG
        elif isinstance(obj.get("content"), str) and obj["content"].strip():
            f |= F_MSG
        return f
    if t not in ("user", "assistant"):
        return f
    f |= F_USER if t == "user" else F_ASSISTANT
    if obj.get("isCompactSummary") is True:
        f |= F_COMPACT
    if isinstance(content, str):
        if content:
            f |= F_MSG
        if INTERRUPT_MARK in content[:200]:
            f |= F_INTERRUPT
    elif isinstance(content, list) and content:
        f |= F_MSG
        for b in content:
            if not isinstance(b, dict):
                continue
            bt = b.get("type")
            if bt == "tool_use":
                f |= F_TOOL_USE
            elif bt == "tool_result":
                f |= F_TOOL_RESULT
                f = (f | F_TOOL_ERROR) if b.get("is_error") is True else (f & ~F_TOOL_ERROR)
            elif bt == "text" and isinstance(b.get("text"), str) and INTERRUPT_MARK in b["text"][:200]:
                f |= F_INTERRUPT
    return f


# -- pass 1: the index --------------------------------------------------------------------------------
@dataclass
class _Index:
    """What the first pass keeps: a few numbers per line, and small per-file facts."""

    offsets: array = field(default_factory=lambda: array("q"))
    lengths: array = field(default_factory=lambda: array("q"))
    flags: array = field(default_factory=lambda: array("H"))
    pkeys: array = field(default_factory=lambda: array("q"))  # hash of the parent uuid, 0 for none
    parent: array = field(default_factory=lambda: array("l"))
    keys: dict[int, int] = field(default_factory=dict)  # hash of uuid -> index
    oversize_uuid: dict[int, str] = field(default_factory=dict)
    side_root_uuid: dict[int, str] = field(default_factory=dict)  # uuids of sidechain roots, by index
    lines: int = 0  # non-blank lines
    by_type: Counter = field(default_factory=Counter)
    unknown_types: set[str] = field(default_factory=set)
    quarantined: int = 0
    bad_utf8: int = 0
    duplicates: int = 0
    no_uuid: int = 0
    orphans: int = 0
    summaries: list[dict[str, Any]] = field(default_factory=list)
    models: Counter = field(default_factory=Counter)
    session_id: str | None = None
    cwd: str | None = None
    git_branch: str | None = None
    version: str | None = None
    prime_parts: list[str] = field(default_factory=list)
    prime_budget: int = PRIME_CHARS
    prime_lines: int = 0

    def __len__(self) -> int:
        return len(self.offsets)

    def add(self, uuid: str, parent: str | None, offset: int, length: int, flags: int) -> bool:
        key = hash(uuid) or 1
        if key in self.keys:
            self.duplicates += 1
            return False
        pkey = (hash(parent) or 1) if parent else 0
        if flags & F_SIDE:
            p = self.keys.get(pkey, -1) if pkey else -1
            if p == -1 or not self.flags[p] & F_SIDE:
                self.side_root_uuid[len(self.offsets)] = uuid
        self.keys[key] = len(self.offsets)
        self.offsets.append(offset)
        self.lengths.append(length)
        self.flags.append(flags)
        self.pkeys.append(pkey)
        return True

    def resolve(self) -> None:
        n = len(self.offsets)
        self.parent = array("l", [-1]) * n
        for i, pk in enumerate(self.pkeys):
            if pk:
                p = self.keys.get(pk, -1)
                if p == -1 or p == i:
                    self.orphans += 1
                    p = -1
                self.parent[i] = p
        self.pkeys = array("q")
        self.keys = {}


def _note_envelope(idx: _Index, obj: dict[str, Any]) -> None:
    if idx.session_id is None and isinstance(obj.get("sessionId"), str):
        idx.session_id = obj["sessionId"]
    if idx.cwd is None and isinstance(obj.get("cwd"), str) and obj["cwd"]:
        idx.cwd = obj["cwd"]
    if idx.git_branch is None and isinstance(obj.get("gitBranch"), str) and obj["gitBranch"]:
        idx.git_branch = obj["gitBranch"]
    if idx.version is None and isinstance(obj.get("version"), str):
        idx.version = obj["version"]


def _build_index(fh: IO[bytes], rel: str, log: ReadLog, rig: str | None) -> _Index:
    idx = _Index()
    lineno = 0
    for raw in iter_bounded_lines(fh, max_line=MAX_LINE_BYTES, chunk=LINE_CHUNK):
        lineno += 1
        if raw.data is None:
            idx.lines += 1
            idx.quarantined += 1
            log.quarantine(
                SOURCE,
                rel,
                "line_too_large",
                f"line {lineno}: {raw.length} bytes is over the limit of {MAX_LINE_BYTES}",
                rig=rig,
                line=lineno,
            )
            m_uuid = list(_UUID_RE.finditer(raw.tail)) or list(_UUID_RE.finditer(raw.head))
            if m_uuid:
                uuid = m_uuid[-1].group(1).decode("utf-8", "replace")
                m_parent = _PARENT_RE.search(raw.head)
                parent = m_parent.group(1).decode("utf-8", "replace") if m_parent else None
                side = F_SIDE if _SIDE_RE.search(raw.head) else 0
                if idx.add(uuid, parent, raw.offset, raw.length, F_OVERSIZE | side):
                    idx.oversize_uuid[len(idx) - 1] = uuid
                else:
                    idx.duplicates -= 1  # counted as quarantined already
            continue
        if not raw.data.strip():
            continue
        idx.lines += 1
        text, bad = decode_line(raw.data)
        if bad:
            idx.bad_utf8 += 1
        try:
            obj = json.loads(text)
        except ValueError as e:
            idx.quarantined += 1
            reason = "invalid_json" if raw.complete else "truncated_last_line"
            log.quarantine(
                SOURCE, rel, reason, f"line {lineno}: {getattr(e, 'msg', e)}", rig=rig, line=lineno
            )
            continue
        del text
        if not isinstance(obj, dict):
            idx.quarantined += 1
            log.quarantine(
                SOURCE,
                rel,
                "not_an_object",
                f"line {lineno} is a JSON {type(obj).__name__}, not an object",
                rig=rig,
                line=lineno,
            )
            continue
        t = obj.get("type")
        tname = t if isinstance(t, str) else "(missing)"
        idx.by_type[tname] += 1
        if tname not in KNOWN_TYPES and len(idx.unknown_types) < 100:
            idx.unknown_types.add(tname[:100])
        _note_envelope(idx, obj)
        if t == "summary":
            if len(idx.summaries) < MAX_SUMMARIES:
                s = obj.get("summary")
                idx.summaries.append(
                    {
                        "summary": s[:SUMMARY_CHARS] if isinstance(s, str) else None,
                        "leaf_uuid": obj.get("leafUuid"),
                    }
                )
        msg = obj.get("message") if isinstance(obj.get("message"), dict) else {}
        if t == "assistant" and isinstance(msg.get("model"), str) and msg["model"] != "<synthetic>":
            idx.models[msg["model"]] += 1
        side = obj.get("isSidechain") is True
        if (
            not side
            and idx.prime_lines < PRIME_LINES
            and idx.prime_budget > 0
            and t in ("user", "system", "attachment")
        ):
            idx.prime_lines += 1
            idx.prime_budget = _strings(
                msg.get("content")
                if t == "user"
                else obj.get("content")
                if t == "system"
                else obj.get("attachment"),
                idx.prime_budget,
                idx.prime_parts,
            )
        uuid = obj.get("uuid")
        if not isinstance(uuid, str) or not uuid:
            idx.no_uuid += 1
            continue
        parent = obj.get("parentUuid")
        if not isinstance(parent, str) or not parent:
            parent = obj.get("logicalParentUuid")  # a compaction boundary points back this way
        parent = parent if isinstance(parent, str) and parent else None
        if not idx.add(uuid, parent, raw.offset, raw.length, line_flags(obj)):
            continue
    idx.resolve()
    return idx


# -- threads ----------------------------------------------------------------------------------------------
@dataclass
class _Thread:
    name: str  # "main" or "sidechain:<root uuid>"
    kind: str  # "main" or "sidechain"
    chain: array  # indices, root first
    left_out_lines: int = 0
    left_out_branches: int = 0


def _chain_to_root(idx: _Index, leaf: int) -> array:
    side = idx.flags[leaf] & F_SIDE
    chain = array("l")
    seen = bytearray(len(idx))
    i = leaf
    while i != -1 and not seen[i] and (idx.flags[i] & F_SIDE) == side:
        seen[i] = 1
        chain.append(i)
        i = idx.parent[i]
    chain.reverse()
    return chain


def _threads(idx: _Index) -> list[_Thread]:
    n = len(idx)
    flags, parent = idx.flags, idx.parent
    threads: list[_Thread] = []
    main_leaf = next((i for i in range(n - 1, -1, -1) if not flags[i] & F_SIDE), -1)
    if main_leaf != -1:
        chain = _chain_to_root(idx, main_leaf)
        on = bytearray(n)
        for i in chain:
            on[i] = 1
        t = _Thread("main", "main", chain)
        for i in range(n):
            if flags[i] & F_SIDE or on[i] or flags[i] & F_OVERSIZE:
                continue
            t.left_out_lines += 1
            p = parent[i]
            if flags[i] & F_MSG and (p == -1 or on[p]):  # a message that forks off the thread
                t.left_out_branches += 1
        threads.append(t)
    # Sidechains: group lines by their sidechain root; a thread per root.
    root_of = array("l", [-2]) * n
    last_of: dict[int, int] = {}
    members: Counter = Counter()
    for i in range(n):
        if not flags[i] & F_SIDE:
            continue
        path: list[int] = []
        on_path: set[int] = set()
        j = i
        while True:
            if root_of[j] != -2:
                r = root_of[j]
                break
            path.append(j)
            on_path.add(j)
            p = parent[j]
            if p == -1 or not flags[p] & F_SIDE or p in on_path:
                r = j
                break
            j = p
        for k in path:
            root_of[k] = r
        last_of[r] = i
        if not flags[i] & F_OVERSIZE:
            members[r] += 1
    for r in sorted(last_of):
        chain = _chain_to_root(idx, last_of[r])
        uuid = idx.side_root_uuid.get(r) or f"#{r}"
        t = _Thread(f"sidechain:{uuid}", "sidechain", chain)
        t.left_out_lines = members[r] - sum(1 for i in chain if not flags[i] & F_OVERSIZE)
        threads.append(t)
    return threads


def thread_outcome(idx: _Index, chain: array) -> str:
    """ok | error | interrupted | abandoned, from the line flags of a thread's chain."""
    flags = idx.flags
    last = -1
    for pos in range(len(chain) - 1, -1, -1):
        f = flags[chain[pos]]
        if f & F_API_ERROR or (f & F_MSG and f & (F_USER | F_ASSISTANT)):
            last = pos
            break
    if last == -1:
        return "ok"
    f = flags[chain[last]]
    if f & F_INTERRUPT:
        return "interrupted"
    if f & F_API_ERROR:
        return "error"
    if f & F_ASSISTANT and f & F_TOOL_USE:
        return "abandoned"
    for pos in range(last, -1, -1):
        f = flags[chain[pos]]
        if f & F_TOOL_RESULT:
            return "error" if f & F_TOOL_ERROR else "ok"
    return "ok"


# -- pass 2: messages and segments ------------------------------------------------------------------------
def message_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The message kept in meta for one user / assistant / system line, or None."""
    t = obj.get("type")
    if t not in MESSAGE_TYPES:
        return None
    msg = obj.get("message") if isinstance(obj.get("message"), dict) else {}
    if t == "system":
        blocks = _content_blocks(obj.get("content"))
        if obj.get("subtype") == "compact_boundary" and not blocks:
            blocks = [{"type": "text", "text": "Conversation compacted"}]
        if not blocks:
            return None
        role = "system"
    else:
        blocks = _content_blocks(msg.get("content"))
        if not blocks:
            return None
        role = msg.get("role") if isinstance(msg.get("role"), str) else t
    out: dict[str, Any] = {
        "uuid": obj.get("uuid"),
        "parent_uuid": obj.get("parentUuid") or obj.get("logicalParentUuid"),
        "type": t,
        "role": role,
        "timestamp": obj.get("timestamp"),
        "content": blocks,
    }
    if t == "assistant":
        for k_in, k_out in (("model", "model"), ("stop_reason", "stop_reason"), ("id", "message_id")):
            if msg.get(k_in) is not None:
                out[k_out] = msg[k_in]
    if t == "system" and obj.get("subtype"):
        out["subtype"] = obj.get("subtype")
    if obj.get("isMeta") is True:
        out["is_meta"] = True
    if obj.get("isCompactSummary") is True:
        out["is_compact_summary"] = True
    msg_obj = msg if isinstance(msg, dict) else {}
    if _is_api_error(obj, t, msg_obj):
        out["is_api_error"] = True
    return out


def render_message(m: dict[str, Any]) -> str:
    body = "\n".join(render_block(b) for b in m["content"])
    return f"{m['role']}: {body}"


@dataclass
class _Segment:
    messages: list[dict[str, Any]] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    chars: int = 0
    source_lines: int = 0

    def continues(self, m: dict[str, Any]) -> bool:
        """Claude Code writes one assistant message as several lines, one block each: join them."""
        prev = self.messages[-1] if self.messages else None
        return (
            prev is not None
            and m["type"] == "assistant"
            and prev["type"] == "assistant"
            and bool(m.get("message_id"))
            and prev.get("message_id") == m.get("message_id")
        )

    def add(self, m: dict[str, Any], text: str) -> None:
        if self.continues(m):
            prev = self.messages[-1]
            prev["content"].extend(m["content"])
            prev.setdefault("uuids", [prev["uuid"]]).append(m["uuid"])
            prev["uuid"] = m["uuid"]
            for k in ("stop_reason", "timestamp"):
                if m.get(k) is not None:
                    prev[k] = m[k]
            extra = "\n".join(render_block(b) for b in m["content"])
            self.parts[-1] += "\n" + extra
            self.chars += len(extra) + 1
            return
        self.messages.append(m)
        self.parts.append(text)
        self.chars += len(text) + 2

    def would_overflow(self, m: dict[str, Any], text: str) -> bool:
        if not self.messages or self.continues(m):
            return False
        return len(self.messages) >= SEGMENT_MESSAGES or self.chars + len(text) > SEGMENT_CHARS


def _read_at(fh: IO[bytes], offset: int, length: int) -> dict[str, Any] | None:
    fh.seek(offset)
    data = fh.read(length)
    try:
        obj = json.loads(decode_line(data)[0])
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


@dataclass
class _FileFacts:
    path: Path
    rel: str
    session_id: str
    role: str | None
    role_source: str | None
    rig: str | None
    agent: str | None
    commit: str | None
    mtime: float | None
    model: str | None


def _title(facts: _FileFacts, kind: str, segment: int) -> str:
    who = " ".join(x for x in (facts.role or "unknown role", facts.agent) if x)
    return f"{who} session {facts.session_id[:8]}… ({kind}, part {segment + 1})"


def _emit_thread(
    fh: IO[bytes], idx: _Index, thread: _Thread, facts: _FileFacts, file_meta: dict[str, Any], log: ReadLog
) -> Iterator[Document]:
    flags = idx.flags
    outcome = thread_outcome(idx, thread.chain)
    compacted = any(flags[i] & F_COMPACT for i in thread.chain)
    seg = _Segment()
    segment = 0
    emitted = 0

    def make_doc() -> Document:
        ts = [m.get("timestamp") for m in seg.messages if m.get("timestamp")]
        meta = {
            "session_id": facts.session_id,
            "thread": thread.name,
            "segment": segment,
            "outcome": outcome,
            "compacted": compacted,
            "messages": seg.messages,
            "message_count": len(seg.messages),
            "source_lines": seg.source_lines,
            "thread_lines": len(thread.chain),
            "left_out_lines": thread.left_out_lines,
            "left_out_branches": thread.left_out_branches,
            "first_timestamp": ts[0] if ts else None,
            "last_timestamp": ts[-1] if ts else None,
            "agent": facts.agent,
            "role_source": facts.role_source,
            **file_meta,
        }
        if thread.kind != "main":
            meta["summaries"] = []
        return Document(
            source=SOURCE,
            kind=thread.kind,
            path=facts.rel,
            text="\n\n".join(seg.parts),
            title=_title(facts, thread.kind, segment),
            rig=facts.rig,
            commit=facts.commit,
            mtime=facts.mtime,
            role=facts.role,
            key=f"{facts.session_id}:{thread.name}:{segment}",
            meta=meta,
        )

    for i in thread.chain:
        if flags[i] & F_OVERSIZE:
            m = {
                "uuid": idx.oversize_uuid.get(i),
                "parent_uuid": None,
                "type": "omitted",
                "role": "omitted",
                "timestamp": None,
                "content": [{"type": "omitted", "reason": "line_too_large", "bytes": idx.lengths[i]}],
            }
        else:
            obj = _read_at(fh, idx.offsets[i], idx.lengths[i])
            if obj is None:
                log.quarantine(
                    SOURCE,
                    facts.rel,
                    "changed_during_read",
                    "a line read in the first pass no longer parses",
                    rig=facts.rig,
                )
                continue
            m = message_of(obj)
            del obj
        if m is None:
            seg.source_lines += 0 if flags[i] & F_OVERSIZE else 1
            continue
        text = render_message(m)
        if seg.would_overflow(m, text):
            yield make_doc()
            emitted += 1
            segment += 1
            seg = _Segment()
        seg.add(m, text)
        seg.source_lines += 0 if flags[i] & F_OVERSIZE else 1
    if seg.messages:
        yield make_doc()
        emitted += 1
    if emitted == 0:
        log.skip("thread_without_messages")


def _infer_role(scan: TownScan, idx: _Index) -> tuple[str | None, str | None, str | None, str | None]:
    role = rig = agent = source = None
    if idx.cwd:
        cwd = Path(idx.cwd)
        for root in _root_variants(scan.root):
            try:
                parts = cwd.relative_to(root).parts
            except ValueError:
                continue
            role, rig, agent = role_from_path(parts)
            source = "cwd" if role else None
            break
    if role is None:
        t_role, t_rig, t_agent = role_from_text("\n".join(idx.prime_parts))
        if t_role:
            role, source = t_role, "primed_text"
            rig = rig or t_rig
            agent = agent or t_agent
    return role, rig, agent, source


def _rig_excluded(scan: TownScan, rig: str | None) -> bool:
    cfg = scan.config
    return bool(rig) and (rig in cfg.exclude_rigs or (bool(cfg.rigs) and rig not in cfg.rigs))


def read_transcript_file(path: Path, rel: str, scan: TownScan, log: ReadLog) -> Iterator[Document]:
    """Every thread of one transcript file, in segments; problems go to the log, nothing raises."""
    if not check_file(path, log, SOURCE, max_bytes=scan.max_bytes, rel=rel):
        return
    try:
        fh = open(path, "rb")
    except OSError as e:
        log.quarantine(SOURCE, rel, os_error_reason(e), f"{type(e).__name__}: {e.strerror or e}")
        return
    with fh:
        try:
            idx = _build_index(fh, rel, log, None)
        except OSError as e:
            log.quarantine(SOURCE, rel, os_error_reason(e), f"{type(e).__name__}: {e.strerror or e}")
            return
        if idx.lines == 0:
            log.quarantine(SOURCE, rel, "empty_file", "the file holds only whitespace")
            return
        if idx.lines == idx.quarantined:
            log.quarantine(SOURCE, rel, "no_valid_lines", "no line of the file could be read")
            return
        role, rig, agent, role_source = _infer_role(scan, idx)
        if _rig_excluded(scan, rig):
            log.skip("excluded_rig")
            return
        idx.prime_parts = []
        session_id = idx.session_id or path.stem
        commit = scan.rigs[rig].commit if rig in scan.rigs else None
        model = idx.models.most_common(1)[0][0] if idx.models else None
        facts = _FileFacts(
            path, rel, session_id, role, role_source, rig, agent, commit, file_mtime(path), model
        )
        threads = _threads(idx)
        on_threads = sum(1 for t in threads for i in t.chain if not idx.flags[i] & F_OVERSIZE)
        file_meta = {
            "model": model,
            "models": dict(idx.models),
            "cwd": idx.cwd,
            "git_branch": idx.git_branch,
            "version": idx.version,
            "summaries": idx.summaries,
            "line_counts": dict(idx.by_type),
            "unknown_types": sorted(idx.unknown_types),
            "file_lines": {
                "total": idx.lines,
                "on_threads": on_threads,
                "left_out": sum(t.left_out_lines for t in threads),
                "no_uuid": idx.no_uuid,
                "duplicate_uuid": idx.duplicates,
                "quarantined": idx.quarantined,
                "bad_utf8": idx.bad_utf8,
                "orphans": idx.orphans,
            },
            "threads": len(threads),
        }
        try:
            for thread in threads:
                yield from _emit_thread(fh, idx, thread, facts, file_meta, log)
        except OSError as e:
            log.quarantine(SOURCE, rel, os_error_reason(e), f"{type(e).__name__}: {e.strerror or e}")
            return
    log.files_read += 1


def read_transcripts(scan: TownScan, log: ReadLog) -> Iterator[Document]:
    """Documents (kind "main" or "sidechain") for every session transcript of the town."""
    for path, rel in transcript_files(scan, log):
        try:
            yield from read_transcript_file(path, rel, scan, log)
        except Exception as e:  # noqa: BLE001 - a reader never raises on bad input
            logger.exception("unexpected error reading %s", rel)
            log.quarantine(SOURCE, rel, "reader_error", f"{type(e).__name__}: {e}")
