"""The evaluation's outputs: results.json (everything, per case) and report.md (for people).

`load_eval_results(path)` is the one reader the later stages use (the release stage refuses to export
a model whose evaluation did not pass).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gastown_ft import atomic
from gastown_ft.errors import GastownFTError
from gastown_ft.evaluation import arms

RESULTS_NAME = "results.json"
REPORT_NAME = "report.md"
EXAMPLES_IN_REPORT = 3


def _num(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _delta(base: Any, tuned: Any) -> str:
    if not isinstance(base, (int, float)) or not isinstance(tuned, (int, float)):
        return "-"
    d = tuned - base
    return f"{d:+.3f}" if math.isfinite(d) else "-"


def render_markdown(results: dict[str, Any]) -> str:
    """A Markdown report: the decision, the headline numbers, then each part in detail."""
    lines: list[str] = []
    decision = results.get("decision") or {}
    verdict = "PASSED" if results.get("passed") else "FAILED"
    lines += [
        "# Evaluation: base against tuned",
        "",
        f"- base model: `{results.get('base_model')}`",
        f"- adapter: `{results.get('adapter')}`",
        f"- test examples: {results.get('test_examples')}; greedy decoding, same prompts for both"
        + _decoding(results.get("decoding")),
        f"- **decision: {verdict}** — {decision.get('summary', '')}",
    ]
    warnings = results.get("warnings") or []
    if warnings:
        lines += ["", f"## Warnings ({len(warnings)})", ""]
        lines += [f"- **WARNING:** {w}" for w in warnings]
    lines += [
        "",
        "## Checks",
        "",
        "| check | base | tuned | tuned must be | result |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for c in decision.get("checks") or []:
        limit = f"{c.get('op', '>=')} {_num(c['limit'])}" if c["limit"] is not None else "-"
        lines.append(
            f"| {c['name']} | {_num(c['base'])} | {_num(c['tuned'])} | {limit} | "
            f"{'pass' if c['passed'] else '**FAIL**'} |"
        )
    table = arms.markdown(results)
    if table.count("\n") > 1:
        lines += ["", "## Base against tuned, every arm", "", table]
        answer = arms.tuning_vs_prompting(results)
        if answer:
            lines += ["", answer]
    lines += ["", "## Metrics", "", "| metric | base | tuned | change |", "| --- | ---: | ---: | ---: |"]
    for name, v in (results.get("metrics") or {}).items():
        if "/" in name:
            continue
        lines.append(f"| {name} | {_num(v['base'])} | {_num(v['tuned'])} | {_delta(v['base'], v['tuned'])} |")
    heldout = results.get("heldout") or {}
    if heldout:
        lines += [
            "",
            "## Held-out loss on the test split, per task",
            "",
            "| task | examples | tokens | base loss | tuned loss | base ppl | tuned ppl |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for task, t in heldout["tuned"]["tasks"].items():
            b = heldout["base"]["tasks"][task]
            lines.append(
                f"| {task} | {t['examples']} | {t['tokens']} | {_num(b['loss'])} | {_num(t['loss'])} | "
                f"{_num(b['perplexity'], 2)} | {_num(t['perplexity'], 2)} |"
            )
    suite = results.get("task_suite") or {}
    if suite:
        lines += [
            "",
            "## Gas Town task suite",
            "",
            "| task | cases | base passed | tuned passed |",
            "| --- | ---: | ---: | ---: |",
        ]
        for task, t in (suite["tuned"].get("tasks") or {}).items():
            b = (suite["base"].get("tasks") or {}).get(task, {})
            lines.append(f"| {task} | {t['cases']} | {b.get('passed', '-')} | {t['passed']} |")
        for task in suite.get("tasks_missing") or []:
            lines.append(f"| {task} | **0 (not measured)** | - | - |")
        failed = [c for c in suite.get("cases", []) if not c["tuned"]["passed"]][:EXAMPLES_IN_REPORT]
        if failed:
            lines += ["", "Some cases the tuned model failed:", ""]
            for c in failed:
                why = c["tuned"]["details"].get("reason") or json.dumps(c["tuned"]["details"])[:200]
                out = c["tuned"]["output"][:300].replace("```", "'''")
                lines += [f"- `{c['case_id']}`: {why}", "", "  ```", f"  {out}", "  ```"]
    para = results.get("generalization") or {}
    if para:
        b, t = para["base"], para["tuned"]
        lines += [
            "",
            "## Generalization: bead requests phrased unlike any corpus template",
            "",
            f"{t['cases']} hand-written requests (casual, terse, out of order): base passed {b['passed']}, "
            f"tuned passed {t['passed']}.",
            "",
            "| case | expected | tuned wrote | passed |",
            "| --- | --- | --- | --- |",
        ]
        for c in para.get("cases", []):
            got = (c["tuned"]["details"].get("commands") or ["(no command)"])[0]
            want = c["tuned"]["details"].get("expected", "")
            lines.append(
                f"| {c['case_id']} | `{want}` | `{got[:120]}` | {'yes' if c['tuned']['passed'] else 'no'} |"
            )
    lines += _crosscheck_lines(results.get("crosscheck") or {})
    for s in (results.get("patrol") or {}).get("suites") or []:
        b, t = s["base"], s["tuned"]
        lines += [
            "",
            f"## Patrol suite `{s['name']}`",
            "",
            f"- {t['cases']} cases, {t['scored']} scored; accuracy base {_num(b['accuracy'])}, "
            f"tuned {_num(t['accuracy'])}",
        ]
        if t.get("latency_p50_ms") is not None:
            lines.append(
                f"- latency per request p50 / p95: base {_num(b.get('latency_p50_ms'), 0)} / "
                f"{_num(b.get('latency_p95_ms'), 0)} ms, tuned {_num(t['latency_p50_ms'], 0)} / "
                f"{_num(t.get('latency_p95_ms'), 0)} ms"
            )
        for v, summary in (("base", b), ("tuned", t)):
            if summary.get("truncated"):
                lines.append(
                    f"- **{len(summary['truncated'])} prompt(s) cut to fit the context** ({v}): "
                    + ", ".join(f"`{c}`" for c in summary["truncated"][:10])
                )
        if t["unsupported_asserts"]:
            kinds = ", ".join(f"{k} x{n}" for k, n in t["unsupported_asserts"].items())
            lines.append(f"- asserts that cannot run here (not counted): {kinds}")
        for w in s.get("warnings") or []:
            lines.append(f"- warning: {w}")
    lines += _retrieval_lines(results.get("retrieval") or {})
    lines += _episode_lines(results.get("episodes") or {})
    lines += _safety_lines(results.get("safety") or {})
    lines += _canary_lines(results.get("canary") or {})
    lines += _cost_lines(results.get("cost") or {}, results.get("generations") or {})
    g = results.get("guard") or {}
    if g:
        lines += [
            "",
            "## General-text guard",
            "",
            f"{g['texts']} Python standard-library docstrings (sample {g['fingerprint'][:12]}): "
            f"perplexity base {_num(g['base']['perplexity'], 2)}, tuned {_num(g['tuned']['perplexity'], 2)}, "
            f"ratio {_num(g['ratio'])} (at most {_num(g['max_ratio'])}).",
        ]
    timing = results.get("timing_s") or {}
    if timing:
        lines += ["", "Time: " + ", ".join(f"{k} {v:.1f} s" for k, v in timing.items())]
    return "\n".join(lines) + "\n"


def clean_json(x: Any) -> Any:
    """NaN and infinity become null (strict JSON)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean_json(v) for v in x]
    return x


def write_results(out_dir: Path, results: dict[str, Any]) -> tuple[Path, Path]:
    """Write report.md and results.json (with `report_path`) into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path, results_path = out_dir / REPORT_NAME, out_dir / RESULTS_NAME
    results = {**results, "report_path": str(report_path)}
    atomic.write_text(report_path, render_markdown(results))
    atomic.write_text(results_path, json.dumps(clean_json(results), indent=2, allow_nan=False) + "\n")
    return report_path, results_path


def load_eval_results(path: str | Path) -> dict[str, Any]:
    """An evaluation's results.json (or the directory holding it).

    Always has `passed` (bool), `metrics` ({name: {"base", "tuned"}}), `decision` and `report_path`;
    `warnings` (a list of text: task families or tasks the test split has no case for, ...) when the
    evaluation wrote it.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GastownFTError(
            f"no evaluation results at {path}",
            hint="materialize eval_report first (gastown-ft materialize -s eval_report)",
        ) from None
    except (OSError, json.JSONDecodeError) as e:
        raise GastownFTError(f"cannot read evaluation results {path}: {e}") from None
    if not isinstance(data, dict) or not {"passed", "metrics", "report_path"} <= set(data):
        raise GastownFTError(f"{path} is not an evaluation results file (passed/metrics/report_path missing)")
    return data


def _decoding(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    threads = f"{d['threads']} thread{'s' if d['threads'] != 1 else ''}"
    if d.get("engine") == "llama.cpp":
        gguf = d.get("gguf") or {}
        made = "converted now" if gguf.get("converted") else "from the cache"
        together = ", base and tuned side by side" if d.get("side_by_side") else ""
        return (
            f" (engine llama.cpp: {d['precision']} GGUF files of the base and the merged tuned model, "
            f"{made} in {gguf.get('seconds', 0):.1f} s; {threads} per variant{together})"
        )
    merged = ", the tuned adapter merged into its copy" if d.get("tuned") == "merged" else ""
    engine = "engine transformers: " if d.get("engine") else ""
    fallback = f"; {d['engine_fallback']}" if d.get("engine_fallback") else ""
    return f" ({engine}{d['precision']} weights{merged}, {threads}{fallback})"


def _crosscheck_lines(check: dict[str, Any]) -> list[str]:
    """How often the other engine gave the same greedy answer, and the answers that differ."""
    if not check:
        return []
    engine, ref = check["engine"], check["reference"]
    per = "; ".join(
        f"{v}: {r['same']}/{r['cases']} the same" for v, r in (check.get("variants") or {}).items()
    )
    lines = [
        "",
        f"## Engine cross-check: {engine} against {ref}",
        "",
        f"{check['cases']} sampled answers (spread over the tasks) written again by {ref}: "
        f"{check['same']} the same text ({per}), {check['same_verdict']} the same verdict.",
    ]
    diffs = check.get("differences") or []
    if diffs:
        lines += ["", f"| case | variant | {engine} | {ref} |", "| --- | --- | --- | --- |"]
        for d in diffs:
            cells = [
                f"{'pass' if d[e]['passed'] else 'fail'}: `{_cell(d[e]['output'])}`" for e in (engine, ref)
            ]
            lines.append(f"| {d['case_id']} | {d['variant']} | {cells[0]} | {cells[1]} |")
    return lines


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(text.split()).replace("|", "\\|").replace("`", "'")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _retrieval_lines(r: dict[str, Any]) -> list[str]:
    if not r:
        return []
    lines = ["", "## Fine-tuning against prompting: retrieval arms", ""]
    if r.get("skipped"):
        return lines + [f"Not measured: {r['skipped']}."]
    lines.append(
        f"BM25 over {r['passages']} passages of {r['documents']} town documents (conventions, formulas, "
        f"beads; the {r['excluded_test_sources']} documents the test examples came from are not indexed); "
        f"top {r['top_k']} passages, at most {r['max_tokens']} tokens, in the system message; "
        f"{r['per_task']} case(s) per task. Passages dropped because they held a case's answer: "
        f"{r['leak_filtered']}."
    )
    lines += ["", "| case | passages | base+retrieval | tuned+retrieval |", "| --- | ---: | --- | --- |"]
    for c in r.get("cases") or []:
        got = c.get("retrieved") or {}
        cells = ["pass" if c[v]["passed"] else "fail" for v in ("base", "tuned")]
        lines.append(f"| {c['case_id']} | {len(got.get('passages') or [])} | {cells[0]} | {cells[1]} |")
    return lines


def _episode_lines(ep: dict[str, Any]) -> list[str]:
    if not ep.get("base"):
        return []
    lines = [
        "",
        "## Episodes in the simulated town",
        "",
        f"Each model drives every episode (at most {ep['max_steps']} turns of {ep['max_new_tokens']} tokens); "
        "success is judged on the state the town is left in.",
        "",
        "| episode | base | tuned | tuned's commands |",
        "| --- | --- | --- | --- |",
    ]
    for b, t in zip(ep["base"]["per_episode"], ep["tuned"]["per_episode"], strict=True):

        def cell(s: dict[str, Any]) -> str:
            verdict = "**pass**" if s["success"] else "fail"
            return f"{verdict} ({s['stop_reason']}, {s['steps']} turns, {s['invalid_commands']} invalid)"

        cmds = "; ".join(t["commands"][:3]) or "(none)"
        lines.append(f"| {b['name']} | {cell(b)} | {cell(t)} | `{_cell(cmds, 120)}` |")
    return lines


def _safety_lines(sf: dict[str, Any]) -> list[str]:
    if not sf.get("base"):
        return []
    b, t = sf["base"], sf["tuned"]
    lines = [
        "",
        "## Safety suite",
        "",
        f"{t['cases']} requests and episode states that tempt a destructive or out-of-role command; an answer "
        f"is unsafe when the agent policy refuses one of its commands. Unsafe: base {b['unsafe']}, tuned "
        f"{t['unsafe']}; held for confirmation: base {b['held']}, tuned {t['held']}.",
        "",
        "| case | tempts | base | tuned |",
        "| --- | --- | --- | --- |",
    ]
    for c in sf.get("cases") or []:

        def cell(j: dict[str, Any]) -> str:
            if j["unsafe"]:
                bad = next(v for v in j["verdicts"] if v["decision"] == "refuse")
                return f"**UNSAFE** `{_cell(bad['command'], 80)}`"
            return "held" if j["held"] else ("safe" if j["verdicts"] else "no command")

        lines.append(f"| {c['case_id']} | {c['tempts']} | {cell(c['base'])} | {cell(c['tuned'])} |")
    return lines


def _canary_lines(c: dict[str, Any]) -> list[str]:
    if not c:
        return []
    if not c.get("canaries"):
        return ["", "## Canary check", "", "No canaries configured (`[evaluation] canaries`): not checked."]
    lines = [
        "",
        "## Canary check",
        "",
        f"{c['canaries']} planted secrets searched for in all {c['generations_checked']} generations: "
        f"{len(c['hits'])} hit(s).",
    ]
    for h in c.get("hits") or []:
        lines.append(f"- **{h['part']}** `{h['case_id']}` ({h['arm']}): {h['canary']}")
    return lines


def _cost_lines(cost: dict[str, Any], generations: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    arms_cost = cost.get("arms") or {}
    if arms_cost:
        lines += [
            "",
            "## Cost of use",
            "",
            f"Per arm, on its task-suite requests; peak RSS per call ({cost.get('peak_rss_scope')}).",
            "",
            "| arm | requests | latency p50 ms | p95 ms | tokens/s | peak RSS MB | batch |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for arm, a in arms_cost.items():
            lines.append(
                f"| {arm} | {a['requests']} | {_num(a['latency_p50_ms'], 0)} | {_num(a['latency_p95_ms'], 0)} | "
                f"{_num(a['tokens_per_s'], 1)} | {_num(a['peak_rss_mb'], 0)} | {a['batch_size']} |"
            )
    parts = generations.get("parts") or {}
    if parts:
        per = "; ".join(
            f"{name} " + ", ".join(f"{arm} {n}" for arm, n in row["generations"].items())
            for name, row in parts.items()
        )
        lines += ["", f"Generations: {generations.get('total', 0)} ({per})."]
    return lines
