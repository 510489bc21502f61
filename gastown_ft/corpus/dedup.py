"""Deduplication of chat examples: exact duplicates, conflicts, near-duplicates (MinHash LSH).

Three passes, each over the survivors of the one before, so MinHash is computed only for what is
left once the cheap hash passes are done:

1. Exact duplicates: examples whose normalized messages are equal (case folded, NFKC, whitespace
   collapsed; tool-call arguments re-serialized as sorted-key JSON; tool-call ids replaced by their
   position in the conversation, since they are random per session). One is kept.
2. Conflicts: examples whose prompt (every message before the last assistant message, normalized the
   same way) is equal but whose answer (the last assistant message and anything after it) differs.
   The one from the newest source is kept; the others are reported. A prompt with no user or tool
   message (only a system prompt, or nothing) is never a conflict: many examples of one role start
   from the same system prompt and legitimately answer differently.
3. Near-duplicates: 5-word shingles of the conversation text (hashed to 32 bits), MinHash
   signatures (datasketch's affine32 scheme, fixed seed, so runs agree) and LSH banding (the buckets
   datasketch's MinHashLSH would form, computed with numpy; a test checks the two agree) give
   candidate pairs; a candidate is a near-duplicate when the exact Jaccard similarity of
   the two shingle sets is at least `threshold`. The LSH banding is chosen for recall (`lsh_params`:
   a pair at the threshold is a candidate with probability >= 95%), since candidates are checked
   anyway; a candidate whose MinHash estimate is more than 3 standard deviations under the threshold
   is not checked. System messages are left out of the shingled text by default
   (`shingle_system=False`): a long shared role prompt would otherwise make every example of a role
   look alike.

   Cost: linear in the text for sketching; the checks grow with the number of similar pairs. In a
   dense shell of examples that are all alike but under the threshold, a kept example checks at
   most MAX_VERIFY candidates (the most similar by estimate); `DedupResult.stats["capped_queries"]`
   counts the kept examples where that cap cut in (and a duplicate might have been missed).

Decisions travel only between examples that share a band bucket, so each connected component of
that graph is decided on its own; an incremental build reuses the decisions of a component whose
members are all unchanged (`dedup_columns` with member keys and `memo`), with the same result.

Memory: the passes run over `DedupColumns` (hashes, times, ids and 64-bit band hashes: a few hundred
bytes per example, no example dicts, no signatures); only the examples that share a bucket with
another have their signatures and shingles asked for (`MemberData`, which may read them from disk).

Which example survives is decided by one total order, the same in every pass: newest `source_time`
first, then smallest `example_id`, then smallest normalized-messages hash, then smallest hash of the
whole row (only consulted for exact duplicates that tie on everything else). Near-duplicates are
resolved greedily in that order: an example is kept unless a kept example ranked before it is a
near-duplicate of it, so a dropped example never causes another one to be dropped. The result does
not depend on the input order; `kept` is returned sorted by rank, `removed` and `conflicts` sorted.
"""

from __future__ import annotations

import hashlib
import json
import math
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

RemovalReason = Literal["exact_duplicate", "near_duplicate", "conflict_older"]

SHINGLE_SIZE = 5  # words per shingle
MINHASH_SEED = 1
MINHASH_SCHEME = "affine32"
LSH_RECALL = 0.95  # chance that a pair exactly at the threshold shares an LSH bucket (is a candidate)
LSH_GAP = 0.15  # among the LSH parameters that reach LSH_RECALL: fewest candidates at threshold - LSH_GAP
# Candidates whose MinHash estimate is this many standard deviations under the threshold are not
# checked exactly (a pair exactly at the threshold is lost this way with probability 0.13%).
ESTIMATE_SIGMAS = 3.0
BATCH_SHINGLES = 2_048  # shingles permuted per numpy call (a cache-sized temporary matrix)
MAX_SHINGLE_CHARS = 2_000_000  # text beyond this is not shingled (bounds the per-document work)
SKETCH_BLOCK = 512  # documents shingled and sketched together
VERIFY_CACHE_BYTES = 32 * 1024 * 1024  # shingle-hash arrays kept for the exact check (LRU)
MAX_VERIFY = 256  # per kept example, at most this many candidates (the most similar) are checked exactly

_U64 = np.uint64
_FMIX1 = _U64(0xFF51AFD7ED558CCD)
_FMIX2 = _U64(0xC4CEB9FE1A85EC53)


@dataclass
class DedupResult:
    kept: list[dict]
    # (example_id, reason, kept_id)
    removed: list[tuple[str, RemovalReason, str]] = field(default_factory=list)
    conflicts: list[dict] = field(default_factory=list)  # {prompt_hash, kept_id, dropped_ids}
    # near-duplicate pass: examples sketched, LSH candidates, pairs checked exactly, and capped queries
    # (kept examples with more than MAX_VERIFY plausible candidates: only the most similar were checked)
    stats: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {"kept": len(self.kept), "exact_duplicate": 0, "near_duplicate": 0, "conflict_older": 0}
        for _eid, reason, _kid in self.removed:
            out[reason] += 1
        return out


# --- normalization -------------------------------------------------------------------------------


def normalize_text(value: Any) -> str:
    """Case-folded, NFKC-normalized text with whitespace runs collapsed to one space."""
    if value is None:
        return ""
    if not isinstance(value, str):
        value = _content_text(value)
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


def _content_text(content: Any) -> str:
    """Text of a content that is not a plain string: a list of parts ({"type": "text", "text": ...})."""
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                parts.append(text if isinstance(text, str) else json.dumps(part, sort_keys=True, default=str))
            else:
                parts.append(str(part))
        return "\n".join(parts)
    return str(content)


def _normalize_arguments(arguments: Any) -> str:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return normalize_text(arguments)
    return normalize_text(json.dumps(arguments, sort_keys=True, ensure_ascii=False, default=str))


def _normalized_messages(messages: Sequence[dict]) -> list[tuple]:
    """One tuple per message: (role, content, ((call ref, name, arguments), ...), tool_call ref, name)."""
    call_refs: dict[str, str] = {}
    n_calls = 0
    out = []
    for message in messages:
        calls = []
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            call_id = call.get("id")
            ref = f"#{n_calls}"
            n_calls += 1
            if call_id is not None:
                ref = call_refs.setdefault(str(call_id), ref)
            calls.append(
                (ref, normalize_text(function.get("name")), _normalize_arguments(function.get("arguments")))
            )
        tool_call_id = message.get("tool_call_id")
        tool_ref = None
        if tool_call_id is not None:
            tool_ref = call_refs.get(str(tool_call_id), normalize_text(str(tool_call_id)))
        out.append(
            (
                normalize_text(message.get("role")),
                normalize_text(message.get("content")),
                tuple(calls),
                tool_ref,
                normalize_text(message.get("name")) or None,
            )
        )
    return out


def _digest(parts: Iterable[bytes], tag: bytes) -> bytes:
    h = hashlib.sha256(tag)
    for part in parts:
        h.update(part)
    return h.digest()


@dataclass(slots=True)
class _Item:
    index: int  # position in the input (never used for ordering)
    example_id: str
    source_time: float
    full: bytes  # hash of all normalized messages
    prompt: bytes | None  # hash of the messages before the last assistant message (None: no conflict check)
    answer: bytes | None
    row_hash: bytes | None = None  # computed only to break a complete tie

    def rank(self) -> tuple:
        return (-self.source_time, self.example_id, self.full, self.row_hash or b"")


def _source_time(example: dict) -> float:
    value = example.get("source_time")
    try:
        t = float(value) if value is not None else -math.inf
    except (TypeError, ValueError):
        return -math.inf
    return -math.inf if math.isnan(t) else t


def _message_key(message: tuple) -> bytes:
    """Bytes of one normalized message. Normalized text holds no \\x1c-\\x1f (str.split() splits on them)."""
    role, content, calls, tool_ref, name = message
    call_text = "\x1d".join("\x1c".join(call) for call in calls)
    opt = "\x1f".join("-" if v is None else "=" + v for v in (tool_ref, name))
    return f"{role}\x1e{content}\x1e{call_text}\x1e{opt}".encode()


def _item(index: int, example: dict) -> _Item:
    messages = example.get("messages") or []
    normalized = _normalized_messages(messages)
    digests = [hashlib.sha256(_message_key(m)).digest() for m in normalized]
    last_assistant = max((i for i, m in enumerate(normalized) if m[0] == "assistant"), default=None)
    prompt = answer = None
    if last_assistant is not None and any(m[0] in ("user", "tool") for m in normalized[:last_assistant]):
        prompt = _digest(digests[:last_assistant], b"prompt\0")
        answer = _digest(digests[last_assistant:], b"answer\0")
    return _Item(
        index=index,
        example_id=str(example.get("example_id", "")),
        source_time=_source_time(example),
        full=_digest(digests, b"messages\0"),
        prompt=prompt,
        answer=answer,
    )


def _row_hash(example: dict) -> bytes:
    blob = json.dumps(example, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).digest()


def _best(items: list[_Item], row_hash_of: Callable[[int], bytes]) -> list[_Item]:
    """The items sorted by rank; full ties (same time, id and messages) are broken by the row hash."""
    ordered = sorted(items, key=_Item.rank)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.rank()[:3] == b.rank()[:3]:
            for it in items:
                if it.row_hash is None:
                    it.row_hash = row_hash_of(it.index)
            return sorted(items, key=_Item.rank)
    return ordered


# --- shingles and MinHash ------------------------------------------------------------------------


def conversation_text(example: dict, *, shingle_system: bool = False) -> str:
    """The normalized text that is shingled for near-duplicate detection."""
    pieces = []
    for message in example.get("messages") or []:
        role = message.get("role")
        if role == "system" and not shingle_system:
            continue
        pieces.append(normalize_text(role))
        pieces.append(normalize_text(message.get("content")))
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            pieces.append(normalize_text(function.get("name")))
            pieces.append(_normalize_arguments(function.get("arguments")))
    return " ".join(p for p in pieces if p)


_POLY = 0x100000001B3 * 2 + 1  # odd base of the polynomial byte hash (mod 2**64)
_POLY_INV = pow(_POLY, -1, 1 << 64)
_powers = (np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64))  # POLY**j, POLY_INV**j


def _power_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    global _powers
    pw, inv = _powers
    if len(pw) < n:
        size = max(n, 2 * len(pw), 4096)
        pw = np.empty(size, dtype=np.uint64)
        inv = np.empty(size, dtype=np.uint64)
        pw[0] = inv[0] = 1
        pw[1:] = np.cumprod(np.full(size - 1, _POLY, dtype=np.uint64))
        inv[1:] = np.cumprod(np.full(size - 1, _POLY_INV, dtype=np.uint64))
        _powers = (pw, inv)
    return pw, inv


def shingle_hashes(text: str, k: int = SHINGLE_SIZE) -> np.ndarray:
    """Sorted unique 32-bit hashes of the k-word shingles of a normalized text (fewer words: one shingle).

    Words are the single-space separated pieces of the text. A shingle's hash is a polynomial hash
    (mod 2**64) of its UTF-8 bytes, computed for all shingles at once from prefix sums, then mixed
    (murmur3 fmix64) and cut to its high 32 bits.
    """
    if not text:
        return np.empty(0, dtype=np.uint32)
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    n_bytes = len(data)
    pw, inv = _power_tables(n_bytes + 1)
    prefix = np.zeros(n_bytes + 1, dtype=np.uint64)
    np.cumsum((data.astype(np.uint64) + _U64(1)) * pw[:n_bytes], out=prefix[1:])
    spaces = np.flatnonzero(data == 0x20)
    starts = np.concatenate(([0], spaces + 1))
    ends = np.concatenate((spaces, [n_bytes]))
    n_words = len(starts)
    n = max(1, n_words - k + 1)
    s = starts[:n]
    e = ends[min(k, n_words) - 1 :][:n]
    h = (prefix[e] - prefix[s]) * inv[s]
    h ^= h >> _U64(33)
    h *= _FMIX1
    h ^= h >> _U64(33)
    h *= _FMIX2
    h ^= h >> _U64(33)
    return np.unique((h >> _U64(32)).astype(np.uint32))


def _identity(value: int) -> int:
    return value


_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))


class _Sketcher:
    """MinHash signatures of shingle-hash arrays, many documents per numpy call.

    The signatures are those of datasketch's `MinHash(num_perm, seed=MINHASH_SEED, scheme="affine32",
    hashfunc=identity).update_batch(hashes)`: the same permutations (taken from such a MinHash), the
    same construction (murmur3 fmix32 pre-mix, then a * h + b mod 2**32, then the minimum). Doing it
    here in bulk avoids update_batch's per-value Python loop; a test checks the two agree.
    """

    def __init__(self, num_perm: int):
        from datasketch import MinHash

        self.template = MinHash(
            num_perm=num_perm, seed=MINHASH_SEED, hashfunc=_identity, scheme=MINHASH_SCHEME
        )
        a, b = self.template.permutations
        self._a = np.asarray(a, dtype=np.uint32)
        self._b = np.asarray(b, dtype=np.uint32)
        self.num_perm = num_perm

    def _permuted(self, hashes: np.ndarray) -> np.ndarray:
        s1, m1, s2, m2, s3 = _FMIX32
        h = hashes.astype(np.uint32, copy=True)
        h ^= h >> s1
        h *= m1
        h ^= h >> s2
        h *= m2
        h ^= h >> s3
        return h[:, None] * self._a + self._b

    def signatures(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """One row per array (each non-empty): the MinHash hash values."""
        out = np.empty((len(arrays), self.num_perm), dtype=np.uint32)
        i = 0
        while i < len(arrays):
            if len(arrays[i]) >= BATCH_SHINGLES:  # a large document alone, in slices
                sig = np.full(self.num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
                for start in range(0, len(arrays[i]), BATCH_SHINGLES):
                    part = self._permuted(arrays[i][start : start + BATCH_SHINGLES])
                    np.minimum(sig, part.min(axis=0), out=sig)
                out[i] = sig
                i += 1
                continue
            j, total = i, 0
            while j < len(arrays) and total + len(arrays[j]) <= BATCH_SHINGLES:
                total += len(arrays[j])
                j += 1
            lengths = np.fromiter((len(arrays[k]) for k in range(i, j)), dtype=np.int64, count=j - i)
            offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
            out[i:j] = np.minimum.reduceat(self._permuted(np.concatenate(arrays[i:j])), offsets, axis=0)
            i = j
        return out


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) for the MinHashLSH index.

    datasketch's own choice (minimizing the integrated false positive and negative areas) finds a pair
    exactly at the threshold only about a third of the time (b=5, r=25 for 0.9 and 128 permutations).
    Candidates are verified here, so a false positive costs little and a false negative loses a
    duplicate: take the (b, r) that makes a pair at the threshold a candidate with probability at least
    LSH_RECALL, with the fewest candidates at threshold - LSH_GAP (b=10, r=12 for 0.9: 96% at 0.9,
    99.6% at 0.93, 13% at 0.7).
    """

    def p(j: float, b: int, r: int) -> float:
        return 1.0 - (1.0 - j**r) ** b

    best: tuple[tuple[float, float], tuple[int, int]] | None = None
    for b in range(2, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            at = p(threshold, b, r)
            if at < LSH_RECALL:
                continue
            key = (p(max(threshold - LSH_GAP, 0.0), b, r), -at)
            if best is None or key < best[0]:
                best = (key, (b, r))
    if best is None:  # too few permutations to reach the recall: the most sensitive banding
        return (num_perm, 1)
    return best[1]


def _lsh_key(band: bytes) -> bytes:
    return hashlib.blake2b(band, digest_size=12).digest()


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted unique hash arrays."""
    if not len(a) and not len(b):
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def _jaccards(mine: np.ndarray, others: Sequence[np.ndarray]) -> np.ndarray:
    """Jaccard similarity of one sorted unique non-empty hash array with each of many, in one pass."""
    lengths = np.fromiter((len(o) for o in others), dtype=np.int64, count=len(others))
    flat = np.concatenate(others)
    idx = np.searchsorted(mine, flat)
    idx[idx == len(mine)] = 0
    hits = (mine[idx] == flat).astype(np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    inter = np.add.reduceat(hits, offsets)
    return inter / (len(mine) + lengths - inter)


# --- the passes ----------------------------------------------------------------------------------


# A component's near-duplicate decisions, reusable while its members stay the same:
# ((removed member key, kept member key), ...), (candidates, verified, capped_queries)
ComponentDecisions = tuple[tuple[tuple[str, str], ...], tuple[int, int, int]]


def sketch_texts(texts: Sequence[str], num_perm: int, shingle_size: int = SHINGLE_SIZE) -> np.ndarray:
    """MinHash signatures of normalized conversation texts, one row each (all zeros: no shingle)."""
    sketcher = _Sketcher(num_perm)
    out = np.zeros((len(texts), num_perm), dtype=np.uint32)
    for block in range(0, len(texts), SKETCH_BLOCK):
        positions, arrays = [], []
        for pos in range(block, min(block + SKETCH_BLOCK, len(texts))):
            hashes = shingle_hashes(texts[pos][:MAX_SHINGLE_CHARS], shingle_size)
            if len(hashes):
                positions.append(pos)
                arrays.append(hashes)
        if positions:
            out[positions] = sketcher.signatures(arrays)
    return out


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) 64-bit hashes of each signature's bands: two signatures share a band's LSH bucket
    exactly when they agree on that band's values (datasketch keys a band by a 96-bit hash of its
    bytes; 64 bits keep the index at 8 bytes per band and example)."""
    sigs = signatures.astype(np.uint64)
    out = np.empty((len(signatures), bands), dtype=np.uint64)
    for band in range(bands):
        h = np.full(len(signatures), _U64(0x9E3779B97F4A7C15), dtype=np.uint64)
        for j in range(band * rows, (band + 1) * rows):
            h ^= sigs[:, j]
            h *= _FMIX1
            h ^= h >> _U64(29)
        out[:, band] = h
    return out


def _band_buckets(signatures: np.ndarray, live: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Bucket number of every live row in every band (-1 for the others)."""
    out = np.full((bands, len(signatures)), -1, dtype=np.int64)
    if not len(live):
        return out
    hashes = band_hashes(signatures[live], bands, rows)
    for band in range(bands):
        _, inverse = np.unique(hashes[:, band], return_inverse=True)
        out[band, live] = inverse.ravel()
    return out


@dataclass
class DedupColumns:
    """What the passes compare, one entry per example, in compact arrays (a few hundred bytes per
    example, so a large corpus is deduplicated without holding its examples or signatures)."""

    example_id: pa.Array  # string, never null
    source_time: np.ndarray  # float64, as _source_time reads it
    full: np.ndarray  # S32: hash of all normalized messages
    prompt: np.ndarray  # S32: hash of the prompt messages (meaningful where has_prompt)
    has_prompt: np.ndarray  # bool: the example takes part in the conflict pass
    bands: np.ndarray  # (n, bands) uint64: band_hashes of the MinHash signature
    live: np.ndarray  # bool: the signature is not empty (there was text to shingle)


class MemberData:
    """Per-example data the near-duplicate pass needs, but only for the examples that share an LSH
    bucket with another one (the members of multi-member components): loaded once for all of them."""

    def load(self, positions: np.ndarray) -> None:
        """Positions (indices into the columns, ascending) whose data will be asked for."""

    def key(self, pos: int) -> str | None:
        """The content key of an example (for reusing a component's decisions), or None."""
        return None

    def signatures(self, positions: list[int]) -> np.ndarray:
        raise NotImplementedError

    def shingles(self, pos: int) -> np.ndarray:
        raise NotImplementedError


def dedup_examples(
    examples: list[dict],
    *,
    threshold: float = 0.9,
    num_perm: int = 128,
    shingle_size: int = SHINGLE_SIZE,
    shingle_system: bool = False,
) -> DedupResult:
    """Drop exact duplicates, resolve conflicts (newest source wins), drop near-duplicates.

    `threshold` is the Jaccard similarity of word-shingle sets at or above which two examples are
    near-duplicates; `num_perm` the MinHash size. See the module docstring for the rules.
    """
    _check_params(threshold, num_perm, shingle_size)
    texts = [conversation_text(ex, shingle_system=shingle_system) for ex in examples]
    signatures = sketch_texts(texts, num_perm, shingle_size)
    items = [_item(i, ex) for i, ex in enumerate(examples)]
    cols = columns_of(items, signatures, threshold)

    class InMemory(MemberData):
        def signatures(self, positions: list[int]) -> np.ndarray:
            return signatures[positions]

        def shingles(self, pos: int) -> np.ndarray:
            return shingle_hashes(texts[pos][:MAX_SHINGLE_CHARS], shingle_size)

    kept, removed, conflicts, stats = dedup_columns(
        cols,
        row_hashes=lambda positions: {i: _row_hash(examples[i]) for i in positions},
        members=InMemory(),
        threshold=threshold,
        num_perm=num_perm,
    )
    return DedupResult(
        kept=[examples[i] for i in kept.tolist()], removed=removed, conflicts=conflicts, stats=stats
    )


def _check_params(threshold: float, num_perm: int, shingle_size: int) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if num_perm < 2:
        raise ValueError(f"num_perm must be at least 2, got {num_perm}")
    if shingle_size < 1:
        raise ValueError(f"shingle_size must be at least 1, got {shingle_size}")


def example_item(index: int, example: dict) -> _Item:
    """The hashes the exact and conflict passes compare (cacheable with the example)."""
    return _item(index, example)


def columns_of(items: Sequence[_Item], signatures: np.ndarray, threshold: float) -> DedupColumns:
    """DedupColumns of items (in order) and their MinHash signatures."""
    bands, rows = lsh_params(threshold, signatures.shape[1])
    return DedupColumns(
        example_id=pa.array([it.example_id for it in items], pa.string()),
        source_time=np.array([it.source_time for it in items], dtype=np.float64),
        full=np.array([it.full for it in items], dtype="S32"),
        prompt=np.array([it.prompt or b"" for it in items], dtype="S32"),
        has_prompt=np.array([it.prompt is not None for it in items], dtype=bool),
        bands=band_hashes(signatures, bands, rows),
        live=signatures.any(axis=1),
    )


def _groups(keys: np.ndarray, positions: np.ndarray) -> list[np.ndarray]:
    """The positions that share a key, for every key held by more than one (each group ascending)."""
    if not len(positions):
        return []
    order = positions[np.argsort(keys[positions], kind="stable")]
    k = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
    ends = np.append(starts[1:], len(k))
    return [np.sort(order[s:e]) for s, e in zip(starts, ends, strict=True) if e - s > 1]


def _items_at(cols: DedupColumns, positions: np.ndarray) -> list[_Item]:
    return [
        _Item(
            index=p,
            example_id=cols.example_id[p].as_py(),
            source_time=float(cols.source_time[p]),
            full=cols.full[p : p + 1].tobytes(),
            prompt=cols.prompt[p : p + 1].tobytes() if cols.has_prompt[p] else None,
            answer=None,
        )
        for p in positions.tolist()
    ]


def _resolve(
    cols: DedupColumns, groups: list[np.ndarray], row_hashes: Callable[[list[int]], dict[int, bytes]]
) -> list[list[_Item]]:
    """Each group's items sorted by rank; the row hashes of groups with full ties fetched at once."""
    items = [_items_at(cols, g) for g in groups]
    tied = []
    for group in items:
        ordered = sorted(group, key=_Item.rank)
        if any(a.rank()[:3] == b.rank()[:3] for a, b in zip(ordered, ordered[1:], strict=False)):
            tied += [it.index for it in group]
    hashes = row_hashes(tied) if tied else {}
    return [_best(group, hashes.__getitem__) for group in items]


def _rank_order(cols: DedupColumns, positions: np.ndarray) -> np.ndarray:
    """positions sorted by rank (newest source_time, then example_id, then messages hash); the
    positions hold distinct messages hashes, so the row hash is never needed."""
    if not len(positions):
        return positions
    neg_time = -cols.source_time[positions] + 0.0  # + 0.0: -0.0 sorts as 0.0, as in Python
    full = cols.full[positions]
    table = pa.table(
        {
            "t": pa.array(neg_time),
            "id": cols.example_id.take(pa.array(positions)),
            "full": pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(32), len(full), [None, pa.py_buffer(full.tobytes())]
            ),
        }
    )
    order = pc.sort_indices(table, [("t", "ascending"), ("id", "ascending"), ("full", "ascending")])
    return positions[order.to_numpy()]


def dedup_columns(
    cols: DedupColumns,
    *,
    row_hashes: Callable[[list[int]], dict[int, bytes]],
    members: MemberData,
    threshold: float,
    num_perm: int,
    memo: dict[str, ComponentDecisions] | None = None,
    memo_out: dict[str, ComponentDecisions] | None = None,
) -> tuple[np.ndarray, list[tuple[str, RemovalReason, str]], list[dict], dict[str, int]]:
    """The three passes over the examples of `cols`: (kept positions in rank order, removed,
    conflicts, stats). `row_hashes` gives the row hash of examples (only asked for full ties);
    `members` the signatures and shingles of the examples the near-duplicate pass compares.

    With member keys and `memo`, the near-duplicate decisions of a component of the LSH graph whose
    members are all unchanged are reused; `memo_out` receives every component's.
    """
    n = len(cols.full)
    removed: list[tuple[str, RemovalReason, str]] = []
    conflicts: list[dict] = []
    stats = {"sketched": 0, "candidates": 0, "verified": 0, "capped_queries": 0}
    alive = np.ones(n, dtype=bool)

    # 1. exact duplicates
    for best, *rest in _resolve(cols, _groups(cols.full, np.arange(n)), row_hashes):
        alive[[it.index for it in rest]] = False
        removed.extend((it.example_id, "exact_duplicate", best.example_id) for it in rest)

    # 2. conflicts: same prompt, different answer (same prompt and answer would be an exact duplicate)
    with_prompt = np.flatnonzero(alive & cols.has_prompt)
    for best, *rest in _resolve(cols, _groups(cols.prompt, with_prompt), row_hashes):
        alive[[it.index for it in rest]] = False
        removed.extend((it.example_id, "conflict_older", best.example_id) for it in rest)
        conflicts.append(
            {
                "prompt_hash": best.prompt.hex(),
                "kept_id": best.example_id,
                "dropped_ids": sorted(it.example_id for it in rest),
            }
        )

    # 3. near-duplicates over what is left, in rank order
    ranked = _rank_order(cols, np.flatnonzero(alive))
    if len(ranked) >= 2:
        gone = _near_dedup(
            cols, ranked, members, threshold, num_perm, removed, stats, memo=memo, memo_out=memo_out
        )
        ranked = ranked[~gone]
    removed.sort()
    conflicts.sort(key=lambda c: (c["prompt_hash"], c["kept_id"]))
    return ranked, removed, conflicts, stats


def _components(hashes: np.ndarray, live: np.ndarray) -> dict[int, list[int]]:
    """The components with more than one member of the graph in which two ranked rows are linked
    when they share a band bucket: their rows (ascending), in the order of their first row."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n, bands = hashes.shape
    live_rows = np.flatnonzero(live)
    rows, cols, n_buckets = [], [], 0
    for band in range(bands):
        h = hashes[live_rows, band]
        _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
        shared = counts[inverse] > 1  # rows in a bucket of one link to nothing
        rows.append(live_rows[shared])
        cols.append(n + n_buckets + inverse[shared])
        n_buckets += len(counts)
    rows_a, cols_a = np.concatenate(rows), np.concatenate(cols)
    if not len(rows_a):
        return {}
    # Only the rows that share a bucket (and those buckets) are graph nodes: renumber them densely.
    nodes, dense = np.unique(np.concatenate((rows_a, cols_a)), return_inverse=True)
    edges = dense.reshape(2, -1)
    graph = coo_matrix(
        (np.ones(len(rows_a), dtype=np.int8), (edges[0], edges[1])), shape=(len(nodes), len(nodes))
    )
    _, labels = connected_components(graph, directed=False)
    is_row = nodes < n
    out: dict[int, list[int]] = {}
    for row, label in zip(nodes[is_row].tolist(), labels[is_row].tolist(), strict=True):
        out.setdefault(label, []).append(row)
    return out


def _near_dedup(
    cols: DedupColumns,
    ranked: np.ndarray,
    members: MemberData,
    threshold: float,
    num_perm: int,
    removed: list,
    stats: dict[str, int],
    *,
    memo: dict[str, ComponentDecisions] | None,
    memo_out: dict[str, ComponentDecisions] | None,
) -> np.ndarray:
    """Greedy in rank order: an example is kept unless a kept example ranked before it is a verified
    near-duplicate of it. Candidates are the undecided examples that share an LSH band bucket.
    Returns which ranked rows are removed.

    Decisions only travel along shared buckets, so each connected component of the bucket graph is
    decided on its own, exactly as in one pass over everything; a component whose member keys are
    in `memo` takes its earlier decisions.
    """
    n = len(ranked)
    live = cols.live[ranked]
    stats["sketched"] += int(live.sum())
    bands, rows = lsh_params(threshold, num_perm)
    if cols.bands.shape[1] != bands:
        raise ValueError(f"band hashes for {cols.bands.shape[1]} bands, the threshold needs {bands}")
    hashes = cols.bands[ranked]
    groups = _components(hashes, live)
    gone = np.zeros(n, dtype=bool)
    if not groups:
        return gone
    in_multi = np.sort(np.concatenate([np.asarray(g) for g in groups.values()]))
    members.load(np.sort(ranked[in_multi]))
    params = f"{threshold}:{num_perm}:{bands}:{rows}:{MAX_VERIFY}:{ESTIMATE_SIGMAS}"
    for positions in sorted(groups.values(), key=lambda g: g[0]):  # positions ascend: rank order
        keys = [members.key(int(ranked[p])) for p in positions]
        member_keys = [str(p) for p in positions] if None in keys else keys
        memo_key = None
        if None not in keys:
            memo_key = hashlib.blake2b("\x1f".join([params, *keys]).encode(), digest_size=16).hexdigest()
        decided = memo.get(memo_key) if memo is not None and memo_key is not None else None
        if decided is None:
            decided = _decide_component(positions, ranked, hashes, members, member_keys, threshold, num_perm)
        if memo_out is not None and memo_key is not None:
            memo_out[memo_key] = decided
        pairs, (candidates, verified, capped) = decided
        stats["candidates"] += candidates
        stats["verified"] += verified
        stats["capped_queries"] += capped
        by_key = dict(zip(member_keys, positions, strict=True))
        for gone_key, winner in pairs:
            c, p = by_key[gone_key], by_key[winner]
            gone[c] = True
            removed.append(
                (
                    cols.example_id[int(ranked[c])].as_py(),
                    "near_duplicate",
                    cols.example_id[int(ranked[p])].as_py(),
                )
            )
    return gone


def _decide_component(
    positions: list[int],
    ranked: np.ndarray,
    hashes: np.ndarray,
    members: MemberData,
    member_keys: list[str],
    threshold: float,
    num_perm: int,
) -> ComponentDecisions:
    bands = hashes.shape[1]
    local = {p: j for j, p in enumerate(positions)}
    key_of = dict(zip(positions, member_keys, strict=True))
    signatures = members.signatures([int(ranked[p]) for p in positions])
    band_keys = {p: hashes[p].tolist() for p in positions}
    index: list[dict[int, list[int]]] = [{} for _ in range(bands)]
    for p in positions:
        for b, h in enumerate(band_keys[p]):
            index[b].setdefault(h, []).append(p)
    undecided = set(positions)  # members of a multi-member component all have text
    status: dict[int, int] = {}
    cache: OrderedDict[int, np.ndarray] = OrderedDict()
    cache_bytes = 0

    def cached_shingles(pos: int) -> np.ndarray:
        nonlocal cache_bytes
        got = cache.get(pos)
        if got is not None:
            cache.move_to_end(pos)
            return got
        got = cache[pos] = members.shingles(int(ranked[pos]))
        cache_bytes += got.nbytes
        while cache_bytes > VERIFY_CACHE_BYTES and len(cache) > 1:
            cache_bytes -= cache.popitem(last=False)[1].nbytes
        return got

    min_estimate = threshold - ESTIMATE_SIGMAS * math.sqrt(threshold * (1.0 - threshold) / num_perm) - 1e-9
    pairs: list[tuple[str, str]] = []
    n_candidates = n_verified = n_capped = 0
    for pos in positions:
        if status.get(pos) == 2:
            continue
        status[pos] = 1
        # Only undecided examples are candidates (each leaves once kept or removed): all rank after pos.
        undecided.discard(pos)
        found: set[int] = set()
        for b, h in enumerate(band_keys[pos]):
            found.update(q for q in index[b][h] if q in undecided)
        if not found:
            continue
        candidates = np.fromiter(found, dtype=np.int64, count=len(found))
        n_candidates += len(candidates)
        # the MinHash estimate (vectorized) filters and orders the candidates; the exact Jaccard decides
        rows = np.fromiter((local[c] for c in candidates.tolist()), dtype=np.int64, count=len(candidates))
        estimates = (signatures[rows] == signatures[local[pos]]).mean(axis=1)
        keep = estimates >= min_estimate
        candidates, estimates = candidates[keep], estimates[keep]
        if not len(candidates):
            continue
        order = np.lexsort((candidates, -estimates))[:MAX_VERIFY]
        if len(candidates) > MAX_VERIFY:
            n_capped += 1
        candidates = candidates[order]
        n_verified += len(candidates)
        similar = _jaccards(cached_shingles(pos), [cached_shingles(c) for c in candidates.tolist()])
        for c in candidates[similar >= threshold].tolist():
            status[c] = 2
            undecided.discard(c)
            pairs.append((key_of[c], key_of[pos]))
    return tuple(pairs), (n_candidates, n_verified, n_capped)
