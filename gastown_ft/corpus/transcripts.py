"""Claude Code session transcripts: one document per segment of a conversation thread.

Where: `<claude_projects_dir>/<encoded cwd>/<session-uuid>.jsonl` (the encoded cwd is the absolute cwd
with every character outside [A-Za-z0-9] replaced by "-"); the projects whose folder name starts with
the encoded town root (a fast prefilter only: a session belongs to the town when its `cwd` lies inside
the town root, and sessions outside are counted as `outside_town` and left out), or all of them with
`town.transcripts_all_projects`; also `*.jsonl` files of the town walk that lie under a
`.claude/projects/` directory or in `town.extra_paths` and look like transcripts.

Sub-agents (`<session>/subagents/agent-<id>.jsonl`, workflow agents under `subagents/workflows/<run>/`,
or the old flat `agent-<id>.jsonl`) are read as sidechains linked to the `Task` / `Agent` / `Workflow`
call that started them (transcript_subagents.py): same split group as the parent, their own task as
system prompt. A workflow's `journal.jsonl` is read into its agents' documents; any other file in a
`subagents` folder is counted as `subagent_other_file`.

A file's lines form a tree (uuid / parentUuid). The main thread is the chain from the last
non-sidechain line back to its root, continued across compaction boundaries (transcript_tree.py);
each boundary starts a new segment whose `context` holds what the model saw again after it (the
summary is a context message, preserved turns are listed). A thread that cannot be rebuilt
quarantines the session; a file with no parent links at all is read in line order, with a note.
Each sidechain root (a sub-agent run) gives a thread of its own. Lines on no thread (rewound
branches, edits of earlier prompts) are left out and counted in meta.

Text no person wrote (system reminders, meta lines, command echoes and caveats, hook output, the
compaction summary) becomes `context` blocks (transcript_context.py); queued steering messages
(`queue-operation` remove, `queued_command` attachments) are placed where the agent saw them. Thinking
is never kept: not in the text, not in meta (only counted).

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
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gastown_ft.corpus.documents import Document, ReadLog
from gastown_ft.corpus.files import SNIFF_BYTES, check_file, file_mtime, looks_binary, os_error_reason
from gastown_ft.corpus.roles import role_from_path, role_from_text
from gastown_ft.corpus.scan import SKIP_DIRS, TownScan
from gastown_ft.corpus.town_paths import encode_project_dir, root_variants
from gastown_ft.corpus.transcript_context import (
    COMPACT_SUMMARY,
    as_context,
    attachment_blocks,
    queued_text,
    split_text,
    split_tool_output,
)
from gastown_ft.corpus.transcript_subagents import (
    SessionLinks,
    SubagentPlace,
    read_agent_meta,
    read_journal,
    subagent_place,
)
from gastown_ft.corpus.transcript_tree import Timeline, rebuild_main

logger = logging.getLogger(__name__)

SOURCE = "transcripts"
# The modules this reader's output depends on besides its own (for the read cache's code version).
READER_MODULES = (
    "gastown_ft.corpus.transcript_context",
    "gastown_ft.corpus.transcript_tree",
    "gastown_ft.corpus.transcript_subagents",
)
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
F_BOUNDARY = 1 << 11  # a compact_boundary line
MAX_QUEUED = 10_000  # steering messages remembered per file
THINKING_TYPES = ("thinking", "redacted_thinking")

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
        elif "subagents" in path.relative_to(base).parts and not e.name.endswith(".meta.json"):
            log.skip("subagent_other_file")  # read with its agent: only agent-*.meta.json


def transcript_files(scan: TownScan, log: ReadLog) -> list[tuple[Path, str]]:
    """(path, provenance path) of every transcript to read, each file once, in a stable order."""
    cfg = scan.config
    found: list[tuple[Path, str]] = []
    base = Path(os.path.expanduser(str(cfg.claude_projects_dir)))
    if base.is_dir():
        prefixes = {encode_project_dir(r) for r in root_variants(scan.root)}
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
    if t in THINKING_TYPES:  # never kept: thinking is no training or pretraining text
        return {"type": str(t)}
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
        text, context = split_tool_output(text)  # reminders Claude Code appended to the output
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
        if context:
            block["context"] = context
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
    if t in THINKING_TYPES:
        return ""
    if t == "context":
        return f"[{b.get('kind')}] {b.get('text', '')}"
    if t == "tool_use":
        inp = json.dumps(b.get("input"), ensure_ascii=False, default=str)
        return f"[tool_use {b.get('name')}] {inp}"
    if t == "tool_result":
        tag = "[tool_result error]" if b.get("is_error") else "[tool_result]"
        extra = "".join("\n" + render_block(c) for c in b.get("context") or [])
        return f"{tag} {b.get('content', '')}{extra}"
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
            f |= F_COMPACT | F_MSG | F_BOUNDARY
        elif isinstance(obj.get("content"), str) and obj["content"].strip():
            f |= F_MSG
        return f
    if t == "attachment":
        att = obj.get("attachment") if isinstance(obj.get("attachment"), dict) else {}
        got = attachment_blocks(att)
        if got is not None:
            f |= F_MSG | (F_USER if got[0] == "steering" else 0)
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
    # Compaction: boundary index -> hash of its logical parent, and of its preserved lines
    # (listed uuids, head, tail); resolved to indices in `logical` / `preserved`.
    logical_keys: dict[int, int] = field(default_factory=dict)
    preserved_keys: dict[int, tuple[list[int], int, int]] = field(default_factory=dict)
    logical: dict[int, int] = field(default_factory=dict)
    preserved: dict[int, tuple[list[int], int, int]] = field(default_factory=dict)
    compact_meta: dict[int, dict[str, Any]] = field(default_factory=dict)
    linked: bool = False  # some line names a parent
    # Steering: queue-operation `remove` lines (offset, text, timestamp); texts delivered as
    # queued_command attachments (their hash), to place each message once.
    queued: list[tuple[int, str, str | None]] = field(default_factory=list)
    queue_ops: Counter = field(default_factory=Counter)
    delivered: set[int] = field(default_factory=set)
    links: SessionLinks = field(default_factory=SessionLinks)

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
                self.linked = True
                p = self.keys.get(pk, -1)
                if p == -1 or p == i:
                    self.orphans += 1
                    p = -1
                self.parent[i] = p
        keys = self.keys
        for b, lk in self.logical_keys.items():
            self.linked = True
            self.logical[b] = keys.get(lk, -1) if lk else -1
        for b, (uuids, head, tail) in self.preserved_keys.items():
            listed = [keys[k] for k in uuids if k in keys]
            self.preserved[b] = (listed, keys.get(head, -1), keys.get(tail, -1))
        self.logical_keys, self.preserved_keys = {}, {}
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
        if t == "queue-operation":
            _note_queue(idx, obj, raw.offset)
        elif t == "attachment":
            att = obj.get("attachment") if isinstance(obj.get("attachment"), dict) else {}
            if att.get("type") == "queued_command":
                idx.delivered.add(hash(queued_text(att.get("prompt"))))
        elif t in ("user", "assistant"):
            idx.links.note_line(obj)
        uuid = obj.get("uuid")
        if not isinstance(uuid, str) or not uuid:
            idx.no_uuid += 1
            if t not in MESSAGE_TYPES:
                continue
            uuid = f"\x00line {lineno}"  # kept, so a file without uuids can still be read in line order
        parent = obj.get("parentUuid")
        parent = parent if isinstance(parent, str) and parent else None
        flags = line_flags(obj)
        if not idx.add(uuid, parent, raw.offset, raw.length, flags):
            continue
        if flags & F_BOUNDARY:
            _note_boundary(idx, len(idx) - 1, obj)
    idx.resolve()
    return idx


def _note_queue(idx: _Index, obj: dict[str, Any], offset: int) -> None:
    """A queue-operation line: `remove` is a queued message handed to the agent mid-turn."""
    op = obj.get("operation")
    idx.queue_ops[str(op)] += 1
    if op != "remove" or len(idx.queued) >= MAX_QUEUED:
        return
    text = queued_text(obj.get("content"))
    if text:
        ts = obj.get("timestamp") if isinstance(obj.get("timestamp"), str) else None
        idx.queued.append((offset, _cap(text)[0], ts))


def _uuid_key(v: Any) -> int:
    return (hash(v) or 1) if isinstance(v, str) and v else 0


def _note_boundary(idx: _Index, i: int, obj: dict[str, Any]) -> None:
    """A compact_boundary's logical parent and preserved segment (compactMetadata)."""
    idx.logical_keys[i] = _uuid_key(obj.get("logicalParentUuid"))
    cm = obj.get("compactMetadata") if isinstance(obj.get("compactMetadata"), dict) else {}
    seg = cm.get("preservedSegment") if isinstance(cm.get("preservedSegment"), dict) else {}
    kept = cm.get("preservedMessages") if isinstance(cm.get("preservedMessages"), dict) else {}
    listed = kept.get("uuids") if isinstance(kept.get("uuids"), list) else []
    uuids = [_uuid_key(u) for u in listed[:MAX_QUEUED] if isinstance(u, str) and u]
    head, tail = _uuid_key(seg.get("headUuid")), _uuid_key(seg.get("tailUuid"))
    if uuids or (head and tail):
        idx.preserved_keys[i] = (uuids, head, tail)
    facts = {k: cm[k] for k in ("trigger", "preTokens", "postTokens") if isinstance(cm.get(k), str | int)}
    idx.compact_meta[i] = facts


# -- threads ----------------------------------------------------------------------------------------------
@dataclass
class _Thread:
    name: str  # "main" or "sidechain:<root uuid>"
    kind: str  # "main" or "sidechain"
    chain: array  # indices, root first
    left_out_lines: int = 0
    left_out_branches: int = 0
    timeline: Timeline | None = None  # the main thread's compactions, notes and problem


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


def _main_thread(idx: _Index) -> _Thread | None:
    n = len(idx)
    flags, parent = idx.flags, idx.parent
    main_leaf = next((i for i in range(n - 1, -1, -1) if not flags[i] & F_SIDE), -1)
    if main_leaf == -1:
        return None
    main = bytearray(0 if flags[i] & F_SIDE else 1 for i in range(n))
    boundary = bytearray(1 if flags[i] & F_BOUNDARY else 0 for i in range(n))
    talk = bytearray(1 if flags[i] & F_MSG and not flags[i] & F_COMPACT else 0 for i in range(n))
    tl = rebuild_main(n, parent, main, boundary, idx.logical, idx.preserved, main_leaf, idx.linked, talk)
    t = _Thread("main", "main", tl.chain, timeline=tl)
    on = bytearray(n)
    for i in tl.chain:
        on[i] = 1
    for i in range(n):
        if flags[i] & F_SIDE or on[i] or flags[i] & F_OVERSIZE:
            continue
        t.left_out_lines += 1
        p = parent[i]
        if flags[i] & F_MSG and (p == -1 or on[p]):  # a message that forks off the thread
            t.left_out_branches += 1
    return t


def _threads(idx: _Index) -> list[_Thread]:
    n = len(idx)
    flags, parent = idx.flags, idx.parent
    threads: list[_Thread] = []
    main = _main_thread(idx)
    if main is not None:
        threads.append(main)
    if not idx.linked:  # no parent links: the sidechain lines, in line order, are one thread
        chain = array("l", (i for i in range(n) if flags[i] & F_SIDE))
        if chain:
            uuid = idx.side_root_uuid.get(chain[0]) or f"#{chain[0]}"
            threads.append(_Thread(f"sidechain:{uuid}", "sidechain", chain))
        return threads
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
def _person_blocks(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A user line's blocks with harness text split off as context blocks."""
    out: list[dict[str, Any]] = []
    for b in blocks:
        if b.get("type") == "text":
            out.extend(split_text(b.get("text", "")))
        else:
            out.append(b)
    return out


def message_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The message kept in meta for one user / assistant / system / attachment line, or None.

    role "user" and "assistant" are what a person and the agent said (a user message may also hold
    context blocks); role "context" is text the model saw that no person wrote; role "system" marks a
    compaction boundary."""
    t = obj.get("type")
    flags: dict[str, Any] = {}
    if t == "attachment":
        att = obj.get("attachment") if isinstance(obj.get("attachment"), dict) else {}
        got = attachment_blocks(att)
        if got is None:
            return None
        speaker, blocks = got
        role = "user" if speaker == "steering" else "context"
        if speaker == "steering":
            flags["steering"] = True
    elif t not in MESSAGE_TYPES:
        return None
    elif t == "system":
        blocks = _content_blocks(obj.get("content"))
        if obj.get("subtype") == "compact_boundary":
            role = "system"
            blocks = blocks or [{"type": "text", "text": "Conversation compacted"}]
        else:
            if not blocks:
                return None
            role = "context"
            blocks = as_context(blocks, "system")
    else:
        msg = obj.get("message") if isinstance(obj.get("message"), dict) else {}
        blocks = _content_blocks(msg.get("content"))
        thinking = sum(1 for b in blocks if b.get("type") in THINKING_TYPES)
        if thinking:
            blocks = [b for b in blocks if b.get("type") not in THINKING_TYPES]
            flags["thinking_blocks"] = thinking
        if t == "user":
            if obj.get("isCompactSummary") is True:
                blocks = as_context(blocks, COMPACT_SUMMARY)
            elif obj.get("isMeta") is True:
                blocks = as_context(blocks, "meta")
            else:
                blocks = _person_blocks(blocks)
        if not blocks:
            return None
        role = msg.get("role") if isinstance(msg.get("role"), str) else t
        if t == "user" and all(b.get("type") == "context" for b in blocks):
            role = "context"
    out: dict[str, Any] = {
        "uuid": obj.get("uuid"),
        "parent_uuid": obj.get("parentUuid") or obj.get("logicalParentUuid"),
        "type": t,
        "role": role,
        "timestamp": obj.get("timestamp"),
        "content": blocks,
        **flags,
    }
    msg = obj.get("message") if isinstance(obj.get("message"), dict) else {}
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
    if _is_api_error(obj, str(t), msg):
        out["is_api_error"] = True
    return out


def render_message(m: dict[str, Any]) -> str:
    body = "\n".join(x for x in (render_block(b) for b in m["content"]) if x)
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
    group_session: str = ""  # the split group: a sub-agent shares its parent session's
    subagent: dict[str, Any] | None = None  # a sub-agent file: the call that started it


def _title(facts: _FileFacts, kind: str, segment: int) -> str:
    who = " ".join(x for x in (facts.role or "unknown role", facts.agent) if x)
    if facts.subagent:
        who = f"{who} sub-agent {facts.subagent.get('agent_id')}"
    return f"{who} session {facts.session_id[:8]}… ({kind}, part {segment + 1})"


def _read_message(fh: IO[bytes], idx: _Index, i: int) -> dict[str, Any] | None | bool:
    """The message of line i; None when the line holds none, False when it no longer parses."""
    if idx.flags[i] & F_OVERSIZE:
        return {
            "uuid": idx.oversize_uuid.get(i),
            "parent_uuid": None,
            "type": "omitted",
            "role": "omitted",
            "timestamp": None,
            "content": [{"type": "omitted", "reason": "line_too_large", "bytes": idx.lengths[i]}],
        }
    obj = _read_at(fh, idx.offsets[i], idx.lengths[i])
    if obj is None:
        return False
    return message_of(obj)


def _steering_at(idx: _Index, chain: array) -> dict[int, list[dict[str, Any]]]:
    """Queued messages by the chain position after which the agent saw them (file order)."""
    out: dict[int, list[dict[str, Any]]] = {}
    pending = [q for q in idx.queued if hash(q[1]) not in idx.delivered]
    if not pending:
        return out
    by_offset = sorted((idx.offsets[i], pos) for pos, i in enumerate(chain))
    offsets = [o for o, _ in by_offset]
    for offset, text, ts in pending:
        k = bisect_left(offsets, offset) - 1
        pos = by_offset[k][1] if k >= 0 else -1
        out.setdefault(pos, []).append(
            {
                "uuid": None,
                "parent_uuid": None,
                "type": "queue-operation",
                "role": "user",
                "steering": True,
                "timestamp": ts,
                "content": [{"type": "text", "text": text}],
            }
        )
    return out


def _epoch_context(fh: IO[bytes], idx: _Index, b: int, tl: Timeline) -> dict[str, Any]:
    """What a compaction boundary says about the context after it: metadata and preserved turns."""
    kept: list[dict[str, Any]] = []
    chars = 0
    for p in tl.preserved.get(b, []):
        m = _read_message(fh, idx, p)
        if not m or m["role"] not in ("user", "assistant"):
            continue
        chars += len(render_message(m))
        if chars > SEGMENT_CHARS // 4:
            break
        kept.append(m)
    return {"compaction": idx.compact_meta.get(b, {}), "preserved": kept}


def _emit_thread(
    fh: IO[bytes], idx: _Index, thread: _Thread, facts: _FileFacts, file_meta: dict[str, Any], log: ReadLog
) -> Iterator[Document]:
    flags = idx.flags
    outcome = thread_outcome(idx, thread.chain)
    compacted = any(flags[i] & F_COMPACT for i in thread.chain)
    tl = thread.timeline
    boundaries = set(tl.boundaries) if tl else set()
    steering = _steering_at(idx, thread.chain) if thread.kind == "main" else {}
    subagent = facts.subagent
    seg = _Segment()
    segment = epoch = emitted = 0
    context: dict[str, Any] | None = None

    def make_doc() -> Document:
        ts = [m.get("timestamp") for m in seg.messages if m.get("timestamp")]
        meta = {
            "session_id": facts.session_id,
            "group_session": facts.group_session or facts.session_id,
            "thread": thread.name,
            "segment": segment,
            "epoch": epoch,
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
        if context is not None:
            meta["context"] = context
        if tl is not None and tl.notes:
            meta["notes"] = tl.notes
        if subagent:
            meta["subagent"] = subagent
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

    def add(m: dict[str, Any]) -> Iterator[Document]:
        nonlocal seg, segment, emitted
        text = render_message(m)
        if seg.would_overflow(m, text):
            yield make_doc()
            emitted += 1
            segment += 1
            seg = _Segment()
        seg.add(m, text)

    for m in steering.get(-1, []):
        yield from add(m)
    for pos, i in enumerate(thread.chain):
        if i in boundaries:  # a compaction: the model's context starts again here
            if seg.messages:
                yield make_doc()
                emitted += 1
                segment += 1
                seg = _Segment()
            epoch += 1
            context = _epoch_context(fh, idx, i, tl) if tl is not None else None
        m = _read_message(fh, idx, i)
        if m is False:
            log.quarantine(
                SOURCE,
                facts.rel,
                "changed_during_read",
                "a line read in the first pass no longer parses",
                rig=facts.rig,
            )
            continue
        if m is not None:
            if subagent is None and thread.kind == "sidechain" and not seg.messages and segment == 0:
                subagent = _inline_subagent(idx, m)
            yield from add(m)
        seg.source_lines += 0 if flags[i] & F_OVERSIZE else 1
        for q in steering.get(pos, []):
            yield from add(q)
    if seg.messages:
        yield make_doc()
        emitted += 1
    if emitted == 0:
        log.skip("thread_without_messages")


def _inline_subagent(idx: _Index, first: dict[str, Any]) -> dict[str, Any] | None:
    """An old-style sidechain in the parent's own file: linked by its prompt to the call that sent it."""
    text = "\n".join(b.get("text", "") for b in first["content"] if b.get("type") == "text").strip()
    tid = idx.links.prompts.get(hash(text)) if text else None
    call = idx.links.calls.get(tid) if tid else None
    if call is None:
        return None
    return {
        "agent_id": None,
        "tool_use_id": call.tool_use_id,
        "tool": call.tool,
        "agent_type": call.agent_type,
        "description": call.description,
        "link": "prompt of the spawning call",
    }


def _in_town(scan: TownScan, cwd: str | None) -> tuple[bool | None, tuple[str, ...]]:
    """(whether cwd lies inside the town root, its parts below the root); None when there is no cwd."""
    if not cwd:
        return None, ()
    path = Path(os.path.normpath(cwd))
    for root in root_variants(scan.root):
        try:
            return True, path.relative_to(root).parts
        except ValueError:
            continue
    return False, ()


def _infer_role(scan: TownScan, idx: _Index) -> tuple[str | None, str | None, str | None, str | None]:
    role = rig = agent = source = None
    inside, parts = _in_town(scan, idx.cwd)
    if inside:
        role, rig, agent = role_from_path(parts)
        source = "cwd" if role else None
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


@dataclass
class ReadState:
    """What reading one file leaves for the next: parent sessions' links, workflow journals."""

    sessions: dict[str, SessionLinks] = field(default_factory=dict)
    journals: dict[Path, tuple[dict[str, list[dict[str, Any]]], int]] = field(default_factory=dict)
    journal_agents: dict[Path, set[str]] = field(default_factory=dict)  # agent files seen per folder
    outside: list[str] = field(default_factory=list)  # provenance of sessions outside the town

    def journal(self, folder: Path) -> dict[str, list[dict[str, Any]]]:
        if folder not in self.journals:
            path = folder / "journal.jsonl"
            self.journals[folder] = read_journal(path) if path.is_file() else ({}, 0)
        return self.journals[folder][0]


def _subagent_facts(
    path: Path, place: SubagentPlace, idx: _Index, state: ReadState, log: ReadLog
) -> tuple[dict[str, Any], SessionLinks | None]:
    parent_session = place.parent_session or (idx.session_id or "").split("#", 1)[0] or None
    links = state.sessions.get(parent_session or "")
    meta = read_agent_meta(path)
    call, how = links.call_for(place, meta) if links else SessionLinks().call_for(place, meta)
    sub: dict[str, Any] = {
        "agent_id": place.agent_id,
        "parent_session_id": parent_session,
        "tool_use_id": call.tool_use_id if call else None,
        "tool": call.tool if call else None,
        "agent_type": (call.agent_type if call else None) or meta.get("agentType"),
        "description": (call.description if call else None) or meta.get("description"),
        "link": how,
    }
    if place.run_id:
        sub["run_id"] = place.run_id
        state.journal_agents.setdefault(path.parent, set()).add(place.agent_id)
        records = state.journal(path.parent).get(place.agent_id)
        if records:
            sub["journal"] = records
    if call is None:
        log.skip("subagent_unlinked")
    return sub, links


def read_transcript_file(
    path: Path, rel: str, scan: TownScan, log: ReadLog, state: ReadState | None = None
) -> Iterator[Document]:
    """Every thread of one transcript file, in segments; problems go to the log, nothing raises."""
    state = state if state is not None else ReadState()
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
        place = subagent_place(path)
        sub: dict[str, Any] | None = None
        parent_links: SessionLinks | None = None
        if place is not None:
            sub, parent_links = _subagent_facts(path, place, idx, state, log)
        # Membership: the folder name was only a prefilter; the session's cwd decides.
        inside, _ = _in_town(scan, idx.cwd)
        if parent_links is not None and parent_links.in_town is not None:
            inside = parent_links.in_town
        from_projects = rel.startswith(PROVENANCE_PREFIX + "/")
        if from_projects and inside is False and not scan.config.transcripts_all_projects:
            log.skip("outside_town")
            state.outside.append(rel)
            logger.info("transcript %s: cwd %s is outside the town root; left out", rel, idx.cwd)
            return
        if parent_links is not None and parent_links.role is not None:
            role, rig, agent, role_source = (
                parent_links.role,
                parent_links.rig,
                parent_links.agent,
                "parent_session",
            )
        else:
            role, rig, agent, role_source = _infer_role(scan, idx)
        if _rig_excluded(scan, rig):
            log.skip("excluded_rig")
            return
        idx.prime_parts = []
        session_id = idx.session_id or path.stem
        if sub is not None:
            group = sub["parent_session_id"] or session_id
        else:
            group = session_id
            idx.links.role, idx.links.rig, idx.links.agent, idx.links.in_town = role, rig, agent, inside
            state.sessions[session_id] = idx.links
        commit = scan.rigs[rig].commit if rig in scan.rigs else None
        model = idx.models.most_common(1)[0][0] if idx.models else None
        facts = _FileFacts(
            path,
            rel,
            session_id,
            role,
            role_source,
            rig,
            agent,
            commit,
            file_mtime(path),
            model,
            group_session=group,
            subagent=sub,
        )
        threads = _threads(idx)
        main = threads[0] if threads and threads[0].kind == "main" else None
        if main is not None and main.timeline is not None and main.timeline.problem:
            log.quarantine(
                SOURCE,
                rel,
                "thread_not_rebuildable",
                f"{main.timeline.problem}: a compact boundary's logicalParentUuid points into the "
                "conversation after it and no preserved-segment metadata says where that line came "
                "from; the session is not read rather than read shortened",
                rig=rig,
            )
            return
        on_threads = sum(1 for t in threads for i in t.chain if not idx.flags[i] & F_OVERSIZE)
        file_meta = {
            "model": model,
            "models": dict(idx.models),
            "cwd": idx.cwd,
            "in_town": inside,
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
        if idx.queue_ops:
            file_meta["queue_operations"] = dict(idx.queue_ops)
        try:
            for thread in threads:
                yield from _emit_thread(fh, idx, thread, facts, file_meta, log)
        except OSError as e:
            log.quarantine(SOURCE, rel, os_error_reason(e), f"{type(e).__name__}: {e.strerror or e}")
            return
    log.files_read += 1


def _is_journal(path: Path) -> bool:
    return path.name == "journal.jsonl" and "subagents" in path.parts


def read_transcripts(scan: TownScan, log: ReadLog, state: ReadState | None = None) -> Iterator[Document]:
    """Documents (kind "main" or "sidechain") for every session transcript of the town."""
    state = state if state is not None else ReadState()
    # Parent sessions before sub-agent files (to link them), workflow journals after their agents.
    files = sorted(
        transcript_files(scan, log),
        key=lambda f: 2 if _is_journal(f[0]) else 1 if subagent_place(f[0]) else 0,
    )
    for path, rel in files:
        if _is_journal(path):  # a workflow journal: read into its agents' documents, not a transcript
            records = state.journal(path.parent)
            orphans = set(records) - state.journal_agents.get(path.parent, set())
            log.skip("subagent_journal")
            if orphans:
                log.skip("journal_agent_without_file", len(orphans))
            if state.journals[path.parent][1]:
                log.quarantine(SOURCE, rel, "journal_unreadable", "journal lines that are not agent records")
            continue
        try:
            yield from read_transcript_file(path, rel, scan, log, state)
        except Exception as e:  # noqa: BLE001 - a reader never raises on bad input
            logger.exception("unexpected error reading %s", rel)
            log.quarantine(SOURCE, rel, "reader_error", f"{type(e).__name__}: {e}")
    if state.outside:
        logger.info(
            "%d transcript(s) outside the town root left out, e.g. %s",
            len(state.outside),
            ", ".join(state.outside[:5]),
        )
