"""Retrieved town context for the "prompting" arms: base + retrieval and tuned + retrieval.

Does fine-tuning beat simply prompting a model with the town's own docs? The retrieval arms answer a
subset of the task suite with the top passages of a BM25 index (the `bm25s` library) over the town's
conventions (CLAUDE.md, role templates, directives, ...), formulas and beads, as the scrubbed corpus
holds them (`corpus/scrubbed_documents.parquet`: no secrets), put into the system message.

No answer leaks in: documents any test example was built from (its `source_ids`) are not indexed, so a
`bd close` case cannot retrieve its own bead and close reason; and a retrieved passage that still
contains a case's reference command or answer text is dropped (counted as `leak_filtered`).

Passages are paragraphs of a document, packed up to `PASSAGE_WORDS` words, each headed by where it
comes from. The retrieved text is bounded in tokens: `[evaluation] retrieval_max_tokens`, and never
more than leaves the prompt and its answer budget inside the model's context.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gastown_ft.evaluation.generate import Prompt

INDEXED_SOURCES = ("conventions", "formulas", "beads")
PASSAGE_WORDS = 120
CONTEXT_HEADER = "# Town reference (retrieved from this town's conventions, formulas and beads)"
_SPACE = re.compile(r"\s+")


@dataclass
class Passage:
    pid: str
    doc_id: str
    source: str
    title: str
    text: str

    def render(self) -> str:
        return f"[{self.source}: {self.title}]\n{self.text}"


def load_documents(path: Path, exclude_doc_ids: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The scrubbed documents of the indexed sources, less `exclude_doc_ids`; [] when the file is absent."""
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        return []
    # filtered while reading: a town's transcripts can be most of the file, and are not indexed
    table = pq.read_table(
        path,
        columns=["doc_id", "source", "kind", "title", "path", "text"],
        filters=[("source", "in", list(INDEXED_SOURCES))],
    )
    excluded = set(exclude_doc_ids)
    return [r for r in table.to_pylist() if r["doc_id"] not in excluded]


def source_ids_of(examples: Sequence[dict[str, Any]]) -> set[str]:
    """Every document the given (test) examples were built from."""
    return {s for e in examples for s in (e.get("source_ids") or [])}


def passages(documents: Sequence[dict[str, Any]]) -> list[Passage]:
    """Each document cut at paragraph breaks into passages of at most about PASSAGE_WORDS words."""
    out: list[Passage] = []
    for d in documents:
        title = d.get("title") or d.get("path") or d["doc_id"]
        chunk: list[str] = []
        words = 0
        paras = [p.strip() for p in re.split(r"\n\s*\n", d.get("text") or "") if p.strip()]
        for para in paras + [None]:
            n = len(para.split()) if para is not None else 0
            if chunk and (para is None or words + n > PASSAGE_WORDS):
                out.append(
                    Passage(f"{d['doc_id']}:{len(out)}", d["doc_id"], d["source"], title, "\n\n".join(chunk))
                )
                chunk, words = [], 0
            if para is not None:
                # an overlong paragraph is cut into word windows
                tokens = para.split()
                while len(tokens) > PASSAGE_WORDS:
                    out.append(
                        Passage(
                            f"{d['doc_id']}:{len(out)}",
                            d["doc_id"],
                            d["source"],
                            title,
                            " ".join(tokens[:PASSAGE_WORDS]),
                        )
                    )
                    tokens = tokens[PASSAGE_WORDS:]
                if tokens:
                    chunk.append(para if len(tokens) == n else " ".join(tokens))
                    words += len(tokens)
    return out


class Index:
    """BM25 (bm25s, Lucene variant, English stopwords) over passages."""

    def __init__(self, items: Sequence[Passage]) -> None:
        import bm25s

        self.items = list(items)
        self._bm25s = bm25s
        self.retriever = bm25s.BM25()
        if self.items:
            corpus = bm25s.tokenize(
                [f"{p.title}\n{p.text}" for p in self.items], stopwords="en", show_progress=False
            )
            self.retriever.index(corpus, show_progress=False)

    def search(self, query: str, k: int) -> list[tuple[Passage, float]]:
        if not self.items or not query.strip():
            return []
        tokens = self._bm25s.tokenize([query], stopwords="en", show_progress=False)
        k = min(k, len(self.items))
        docs, scores = self.retriever.retrieve(tokens, k=k, show_progress=False)
        return [(self.items[int(i)], float(s)) for i, s in zip(docs[0], scores[0], strict=True) if s > 0]


def query_text(prompt: Prompt) -> str:
    """What the agent was asked: the user and tool turns (the system prompt is the same for many)."""
    return "\n".join(m.get("content") or "" for m in prompt.messages if m["role"] in ("user", "tool"))


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


def leak_needles(reference: dict[str, Any]) -> list[str]:
    """The parts of a case's reference answer a passage must not contain: each command, the text."""
    out = []
    for call in reference.get("tool_calls") or []:
        fn = call.get("function") or {}
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except json.JSONDecodeError:
            args = {}
        if isinstance(args, dict) and isinstance(args.get("command"), str):
            out.append(args["command"])
    content = str(reference.get("content") or "")
    if len(content.split()) >= 4:  # a bare "Done." occurs everywhere and gives nothing away
        out.append(content)
    return [n for n in (_norm(x) for x in out) if len(n) >= 8]


@dataclass
class Retrieved:
    prompt: Prompt
    passages: list[dict[str, Any]]  # pid, source, title, score, tokens
    leak_filtered: int
    context_tokens: int


def augment(
    prompt: Prompt,
    index: Index,
    reference: dict[str, Any],
    *,
    top_k: int,
    max_tokens: int,
    count_tokens,
) -> Retrieved:
    """`prompt` with the top passages for it in its system message (a system message is added where
    it has none), within `max_tokens` tokens of retrieved text."""
    needles = leak_needles(reference)
    picked: list[tuple[Passage, float, int]] = []
    used = filtered = 0
    for passage, score in index.search(query_text(prompt), top_k * 4):
        body = _norm(passage.text)
        if any(n in body for n in needles):
            filtered += 1
            continue
        n = count_tokens(passage.render())
        if used + n > max_tokens:
            continue  # a shorter passage further down may still fit
        picked.append((passage, score, n))
        used += n
        if len(picked) == top_k:
            break
    messages = [dict(m) for m in prompt.messages]
    if picked:
        context = CONTEXT_HEADER + "\n\n" + "\n\n".join(p.render() for p, _, _ in picked)
        if messages and messages[0]["role"] == "system":
            messages[0]["content"] = f"{messages[0]['content']}\n\n{context}"
        else:
            messages.insert(0, {"role": "system", "content": context})
    rows = [
        {"pid": p.pid, "source": p.source, "title": p.title, "score": round(s, 3), "tokens": n}
        for p, s, n in picked
    ]
    new = Prompt(messages, prompt.tools, prompt.max_new_tokens, case_id=prompt.case_id)
    return Retrieved(new, rows, filtered, used)
