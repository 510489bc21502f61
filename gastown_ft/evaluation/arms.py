"""One table for people: a row per metric, a column per arm (base, tuned, base + retrieval, tuned +
retrieval), and the one-line answer to "does tuning beat prompting on this town, and by how much".

What an arm did not measure is "-": the retrieval arms answer a subset of the task suite, so their
scores sit on the subset's row, beside base and tuned on the same cases.
"""

from __future__ import annotations

import math
from typing import Any

ARMS = ("base", "tuned", "base+retrieval", "tuned+retrieval")


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _ratio(n: Any, of: Any) -> str:
    return "-" if n is None or not of else f"{n}/{of}"


def rows(results: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """(metric, {arm: cell}) for every metric the evaluation measured."""
    out: list[tuple[str, dict[str, str]]] = []

    def both(name: str, base: Any, tuned: Any, digits: int = 3) -> None:
        out.append((name, {"base": _f(base, digits), "tuned": _f(tuned, digits)}))

    s = results.get("task_suite") or {}
    if s.get("base"):
        both(
            f"task suite score ({s['tuned']['cases']} cases)",
            s["base"]["suite_score"],
            s["tuned"]["suite_score"],
        )
        fams = s["tuned"].get("families") or {}
        if "command" in fams:
            b = s["base"]["families"]["command"]
            both("command validity", b.get("validity"), fams["command"].get("validity"))
            both("command accuracy", b["score"], fams["command"]["score"])
        if "exact" in fams:
            both("exact answers", s["base"]["families"]["exact"]["score"], fams["exact"]["score"])
    r = results.get("retrieval") or {}
    arms = r.get("arms") or {}
    if arms:
        n = arms["tuned"]["cases"]
        out.append(
            (f"task suite score, retrieval subset ({n} cases)", {a: _f(arms[a]["suite_score"]) for a in ARMS})
        )
        if all("command" in (arms[a].get("families") or {}) for a in ARMS):
            out.append(
                (
                    "command validity, retrieval subset",
                    {a: _f(arms[a]["families"]["command"].get("validity")) for a in ARMS},
                )
            )
    g = results.get("generalization") or {}
    if g.get("base"):
        both(
            f"generalization ({g['tuned']['cases']} paraphrased requests)",
            g["base"]["suite_score"],
            g["tuned"]["suite_score"],
        )
    ep = results.get("episodes") or {}
    if ep.get("base"):
        b, t = ep["base"], ep["tuned"]
        out.append(
            (
                f"episodes succeeded (of {t['episodes']}, {ep.get('max_steps')} steps at most)",
                {
                    "base": _ratio(b["succeeded"], b["episodes"]),
                    "tuned": _ratio(t["succeeded"], t["episodes"]),
                },
            )
        )
        for key, label in (
            ("invalid_commands", "episode invalid commands"),
            ("wasted_steps", "episode wasted steps"),
            ("policy_refusals", "episode policy refusals"),
        ):
            out.append((label, {"base": str(b[key]), "tuned": str(t[key])}))
    sf = results.get("safety") or {}
    if sf.get("base"):
        b, t = sf["base"], sf["tuned"]
        out.append(
            (
                "unsafe actions (safety suite: answers with a refused command)",
                {"base": _ratio(b["unsafe"], b["cases"]), "tuned": _ratio(t["unsafe"], t["cases"])},
            )
        )
    c = results.get("canary") or {}
    if c.get("canaries"):
        hits: dict[str, int] = {}
        for h in c.get("hits") or []:
            hits[h["arm"]] = hits.get(h["arm"], 0) + 1
        cells = {a: str(hits.get(a, 0)) for a in ARMS if a in ("base", "tuned") or arms}
        out.append(
            (f"canary hits ({c['canaries']} planted secrets, {c['generations_checked']} generations)", cells)
        )
    h = results.get("heldout") or {}
    if h.get("base"):
        both("held-out loss", h["base"]["overall"]["loss"], h["tuned"]["overall"]["loss"])
    guard = results.get("guard") or {}
    if guard.get("base"):
        both("general-text perplexity", guard["base"]["perplexity"], guard["tuned"]["perplexity"], 2)
    cost = (results.get("cost") or {}).get("arms") or {}
    if cost:
        present = [a for a in ARMS if a in cost]
        out.append(
            (
                "latency per request p50 / p95 (ms)",
                {
                    a: f"{_f(cost[a]['latency_p50_ms'], 0)} / {_f(cost[a]['latency_p95_ms'], 0)}"
                    for a in present
                },
            )
        )
        out.append(("generated tokens/s", {a: _f(cost[a]["tokens_per_s"], 1) for a in present}))
        out.append(("peak RSS (MB)", {a: _f(cost[a]["peak_rss_mb"], 0) for a in present}))
    return out


def markdown(results: dict[str, Any]) -> str:
    """The table as Markdown: only the arm columns something was measured for."""
    table = rows(results)
    arms = [a for a in ARMS if any(a in cells for _, cells in table)]
    lines = [
        "| metric | " + " | ".join(arms) + " |",
        "| --- | " + " | ".join("---:" for _ in arms) + " |",
    ]
    for name, cells in table:
        lines.append(f"| {name} | " + " | ".join(cells.get(a, "-") for a in arms) + " |")
    return "\n".join(lines)


def tuning_vs_prompting(results: dict[str, Any]) -> str | None:
    """Does the tuned model beat the base model prompted with retrieved town context, and by how much
    (on the retrieval subset); None when the retrieval arms did not run."""
    arms = (results.get("retrieval") or {}).get("arms") or {}
    if not arms:
        return None
    t, br, tr = (arms[a]["suite_score"] for a in ("tuned", "base+retrieval", "tuned+retrieval"))
    n = arms["tuned"]["cases"]
    gap = t - br
    verdict = "beats" if gap > 1e-9 else ("ties" if abs(gap) <= 1e-9 else "does NOT beat")
    return (
        f"Tuning {verdict} prompting on this town: on {n} task-suite cases the tuned model scores {t:.3f}, "
        f"the base model with retrieved town context {br:.3f} ({gap:+.3f}); tuned with retrieved context "
        f"scores {tr:.3f} ({tr - t:+.3f} against tuned alone)."
    )
