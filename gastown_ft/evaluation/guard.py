"""The general-text guard: perplexity on text outside Gas Town must not degrade much after tuning.

The text is a deterministic sample of docstrings of the Python standard library that this interpreter
ships (read with `ast`, nothing downloaded): files are visited in the order of a hash of their path
relative to the stdlib root, and at most a few docstrings of at least `MIN_CHARS` characters are taken
from each. The same Python version gives the same sample on every machine; `fingerprint` records it.
"""

from __future__ import annotations

import ast
import hashlib
import math
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MIN_CHARS = 200
PER_FILE = 3
_SKIP_PARTS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "turtledemo"}


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stdlib_docstrings(count: int, root: Path | None = None) -> list[str]:
    """`count` docstrings of the standard library (deterministic for a given Python version)."""
    root = root or _stdlib_root()
    files = [
        p
        for p in root.rglob("*.py")
        if not (set(p.relative_to(root).parts[:-1]) & _SKIP_PARTS) and not p.name.startswith("test_")
    ]
    files.sort(key=lambda p: _key(p.relative_to(root).as_posix()))
    out: list[str] = []
    for path in files:
        if len(out) >= count:
            break
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        docs = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= MIN_CHARS and doc not in docs:
                    docs.append(doc)
        docs.sort(key=_key)
        out.extend(docs[:PER_FILE])
    return out[:count]


def fingerprint(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(_key(t).encode())
    return h.hexdigest()


def encode_texts(texts: Sequence[str], tokenizer, max_tokens: int) -> list[dict[str, list[int]]]:
    """`<s> text </s>` as the pretraining stream has it, cut to `max_tokens`; every token is scored."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    out = []
    for t in texts:
        ids = tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"]
        ids = ([bos] if bos is not None else []) + ids + ([eos] if eos is not None else [])
        ids = ids[:max_tokens]
        if len(ids) >= 2:
            out.append({"input_ids": ids, "labels": list(ids), "attention_mask": [1] * len(ids)})
    return out


def text_perplexity(
    model, sequences: list[dict[str, list[int]]], pad_id: int, batch_size: int, autocast=None
) -> dict[str, Any]:
    """Token-weighted loss and perplexity of `model` on the encoded texts."""
    from gastown_ft.training.lora import evaluate_loss

    loss = evaluate_loss(model, sequences, pad_id, batch_size, autocast)
    tokens = sum(len(s["input_ids"]) - 1 for s in sequences)
    if loss is None:
        return {"loss": float("nan"), "perplexity": float("nan"), "tokens": 0, "texts": 0}
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": tokens, "texts": len(sequences)}
