"""Base against tuned, end to end: held-out loss, the task suite, patrol suites, the guard, the
retrieval arms, the episodes, the safety suite, the canary check, the cost of use, the decision.

`evaluate_adapter` is what the `eval_report` asset runs; `run_patrol_suite` is also what
`gastown-ft eval` runs. Both models answer the same prompts with greedy decoding (see generate.py),
on the engine `[evaluation] engine` picks (engines.py): llama.cpp over GGUF files where it can run,
with a sample of the answers checked against transformers (crosscheck.py), else transformers. Every
generation goes through one `ObservedDecoder` (observe.py): the canaries are looked for in all of them,
and the task suite's and the retrieval arms' give each arm's cost of use.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gastown_ft.config import EvaluationConfig
from gastown_ft.evaluation import guard as guard_mod
from gastown_ft.evaluation import retrieval as retrieval_mod
from gastown_ft.evaluation import safety as safety_mod
from gastown_ft.evaluation.canary import CanaryWatch
from gastown_ft.evaluation.compare import decide
from gastown_ft.evaluation.cost import CostMeter, PeakRss, percentile
from gastown_ft.evaluation.crosscheck import Answered, crosscheck
from gastown_ft.evaluation.engines import Decoder, TransformersDecoder, open_decoder
from gastown_ft.evaluation.episodes_eval import run_episodes_batched
from gastown_ft.evaluation.generate import LoadedModel, Prompt, load_model, render_prompt, torch_threads
from gastown_ft.evaluation.heldout import encode_by_task, heldout_losses
from gastown_ft.evaluation.observe import ObservedDecoder, truncation_warnings
from gastown_ft.evaluation.paraphrase import paraphrase_cases
from gastown_ft.evaluation.promptfoo import CaseResult, JavaScript, Suite, load_suite, score_output
from gastown_ft.evaluation.promptfoo import summarize as summarize_patrol
from gastown_ft.evaluation.tasks import (
    TaskCase,
    build_task_suite,
    reference_text,
    score_case,
    suite_coverage,
)
from gastown_ft.evaluation.tasks import summarize as summarize_tasks
from gastown_ft.training.data import spread_evenly

VARIANTS = ("base", "tuned")
Log = Callable[[str], None]


def run_patrol_suite(
    loaded: LoadedModel | Decoder,
    suite: Suite,
    *,
    variant: str,
    max_new_tokens: int,
    batch_size: int,
    max_cases: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[CaseResult], dict[str, Any]]:
    """Each case's greedy answer by `variant` (a loaded model answers on transformers), scored by its
    asserts; and the summary (accuracy)."""
    decoder = TransformersDecoder(loaded) if isinstance(loaded, LoadedModel) else loaded
    cases = spread_evenly(suite.cases, max_cases)
    gens = decoder.generate(
        [Prompt(c.messages, case_id=c.case_id) for c in cases],
        variant=variant,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
    )
    js = JavaScript()
    results = []
    for case, gen in zip(cases, gens, strict=True):
        latency_ms = gen.seconds * 1000
        status, asserts, score, _seen = score_output(case, gen.text, latency_ms, js)
        results.append(
            CaseResult(
                case_id=case.case_id,
                description=case.description,
                source=case.source,
                status=status,
                output=gen.text,
                score=score,
                asserts=asserts,
                latency_ms=round(latency_ms, 1),
                prompt_tokens=gen.prompt_tokens,
                new_tokens=gen.new_tokens,
                truncated=gen.truncated,
            )
        )
    return results, patrol_summary(results)


def patrol_summary(results: Sequence[CaseResult]) -> dict[str, Any]:
    """The suite's accuracy (promptfoo.summarize), each request's latency at p50/p95, and the prompts
    that had to be cut to fit the context, by case: reported, never cut silently."""
    out = summarize_patrol(results)
    latencies = [r.latency_ms for r in results]
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    out["latency_p50_ms"] = None if p50 is None else round(p50, 1)
    out["latency_p95_ms"] = None if p95 is None else round(p95, 1)
    out["truncated"] = [r.case_id for r in results if r.truncated]
    return out


MIN_ANSWER_TOKENS = 64  # a short reference must not cut a tool call the model writes a little longer
# A reference that is a bare tool call (the hand-written generalization cases) has no opening line,
# but the tuned model writes the one its corpus answers carry ("Adding the dependency: ..."): without
# room for it, right answers were cut before their closing </tool_call> and scored as no command.
PREAMBLE_TOKENS = 32


def answer_budget(reference: dict[str, Any], ref_tokens: int) -> int:
    """New tokens a case's answer may take: its reference's length with some slack."""
    budget = max(MIN_ANSWER_TOKENS, int(ref_tokens * 1.25) + 8)
    if reference.get("tool_calls") and not str(reference.get("content") or "").strip():
        budget += PREAMBLE_TOKENS
    return budget


def _timed(timing: dict[str, float], name: str, log: Log):
    class _T:
        def __enter__(self):
            self.t = time.perf_counter()
            log(f"evaluation: {name} ...")

        def __exit__(self, *exc):
            timing[name] = round(time.perf_counter() - self.t, 2)

    return _T()


def _score_cases(
    decoder: Decoder,
    tok,
    cases,
    cfg: EvaluationConfig,
    log: Log,
    what: str,
    answered: list[Answered] | None = None,
    group: str | None = None,
    prompts: list[Prompt] | None = None,
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Both variants' greedy answers to `cases` (to `prompts` where given: the cases' own, changed),
    scored: per-variant summaries and every case, and each variant's case scores. Each case with its
    prompt and answers is added to `answered` (for the cross-check), under its task or `group`."""
    prompts = prompts or [case_prompt(tok, case, cfg) for case in cases]
    per_case: list[dict[str, Any]] = [
        {"case_id": c.case_id, "task": c.task, "family": c.family} for c in cases
    ]
    out: dict[str, Any] = {}
    answers: list[dict[str, Any]] = [{} for _ in cases]
    by_variant = decoder.generate_variants(
        prompts, VARIANTS, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size
    )
    all_scores: dict[str, list[Any]] = {}
    for variant in VARIANTS:
        gens = by_variant[variant]
        scores = [score_case(c, g) for c, g in zip(cases, gens, strict=True)]
        all_scores[variant] = scores
        for row, s, g, a in zip(per_case, scores, gens, answers, strict=True):
            row[variant] = {"passed": s.passed, "details": s.details, "output": g.text}
            a[variant] = g
        out[variant] = summarize_tasks(scores)
        log(f"evaluation: {what} ({variant}) {out[variant]['passed']}/{out[variant]['cases']} passed")
    out["cases"] = per_case
    if answered is not None:
        for case, prompt, a in zip(cases, prompts, answers, strict=True):
            answered.append(
                Answered(
                    case.case_id,
                    group or case.task,
                    prompt,
                    a,
                    lambda g, case=case: score_case(case, g).passed,
                )
            )
    return out, all_scores


def case_prompt(tok, case: TaskCase, cfg: EvaluationConfig) -> Prompt:
    """A suite case's prompt with its answer budget (its reference's length with some slack)."""
    ref_tokens = len(
        tok(reference_text(case.reference), add_special_tokens=False, verbose=False)["input_ids"]
    )
    case.reference_tokens = ref_tokens
    return Prompt(
        case.prompt.messages,
        case.prompt.tools,
        min(cfg.max_new_tokens, answer_budget(case.reference, ref_tokens)),
        case_id=case.case_id,
    )


def _resolve_suite_path(path: Path, config_dir: Path | None) -> Path:
    path = Path(path).expanduser()
    if not path.is_absolute() and config_dir is not None:
        return config_dir / path
    return path


def evaluate_adapter(
    base_dir: Path,
    adapter_dir: Path,
    test_examples: Sequence[dict[str, Any]],
    cfg: EvaluationConfig,
    *,
    max_seq_len: int,
    config_dir: Path | None = None,
    gguf_cache: Path | None = None,
    retrieval_documents: Sequence[dict[str, Any]] | None = None,
    log: Log = lambda _msg: None,
) -> dict[str, Any]:
    """Everything eval_report measures, as one JSON-ready dict (decision included).

    `gguf_cache`: where llama.cpp's GGUF files are kept between runs (see llamacpp/gguf_cache.py);
    None: a temporary directory, removed afterwards. `retrieval_documents`: the town's scrubbed
    documents the retrieval arms may index (retrieval.py `load_documents`); those the test examples
    were built from are left out here again. None or empty: no retrieval arms (said in the results)."""
    started = time.perf_counter()
    timing: dict[str, float] = {}
    results: dict[str, Any] = {
        "version": 1,
        "base_model": str(base_dir),
        "adapter": str(adapter_dir),
        "config": cfg.model_dump(mode="json"),
        "test_examples": len(test_examples),
    }
    with _timed(timing, "load", log):
        loaded = load_model(base_dir, adapter_dir)
    with torch_threads(loaded, cfg.threads) as threads, _cache_dir(gguf_cache, cfg.engine) as cache:
        results["threads"] = threads
        _measure(
            loaded,
            test_examples,
            cfg,
            max_seq_len,
            config_dir,
            cache,
            retrieval_documents,
            results,
            timing,
            log,
        )
    results["metrics"] = flat_metrics(results)
    results["warnings"] = collect_warnings(results)
    decision = decide(
        results,
        suite_min_gain=cfg.suite_min_gain,
        suite_floor=cfg.suite_floor,
        patrol_tolerance=cfg.suite_tolerance,
        max_ppl_ratio=cfg.guard_max_ppl_ratio,
        max_unsafe_increase=cfg.max_unsafe_increase,
    )
    results["decision"] = decision.to_dict()
    results["passed"] = decision.passed
    timing["total"] = round(time.perf_counter() - started, 2)
    results["timing_s"] = timing
    return results


@contextlib.contextmanager
def _cache_dir(path: Path | None, engine: str) -> Iterator[Path | None]:
    if path is not None or engine == "transformers":
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="gastown-ft-gguf-") as tmp:
        yield Path(tmp)


def _measure(
    loaded, test_examples, cfg, max_seq_len, config_dir, gguf_cache, retrieval_documents, results, timing, log
) -> None:
    import torch

    tok = loaded.tokenizer
    # Scoring whole sequences is matrix work: the measured best thread count and bf16 autocast where
    # the CPU has it pay off there (decoding, below, keeps its own thread rule).
    from gastown_ft.training.device import detect

    hw = detect("cpu", "auto", None if cfg.threads is None else cfg.threads)
    decode_threads = torch.get_num_threads()
    torch.set_num_threads(hw.threads)
    with torch.inference_mode():
        with _timed(timing, "heldout", log):
            encoded = encode_by_task(test_examples, tok, max_seq_len, cfg.heldout_max_per_task)
            heldout = {}
            for variant in VARIANTS:
                with loaded.variant(variant) as model:
                    heldout[variant] = heldout_losses(
                        model, encoded, loaded.pad_id, cfg.batch_size, hw.autocast
                    )
            results["heldout"] = heldout
        with _timed(timing, "guard", log):
            texts = guard_mod.stdlib_docstrings(cfg.guard_docstrings)
            seqs = guard_mod.encode_texts(texts, tok, cfg.guard_max_tokens)
            g: dict[str, Any] = {"texts": len(seqs), "fingerprint": guard_mod.fingerprint(texts)}
            for variant in VARIANTS:
                with loaded.variant(variant) as model:
                    g[variant] = guard_mod.text_perplexity(
                        model, seqs, loaded.pad_id, cfg.batch_size, hw.autocast
                    )
            base_ppl, tuned_ppl = g["base"]["perplexity"], g["tuned"]["perplexity"]
            g["ratio"] = tuned_ppl / base_ppl if base_ppl else float("nan")
            g["max_ratio"] = cfg.guard_max_ppl_ratio
            results["guard"] = g
    results["scoring"] = {"threads": hw.threads, "precision": hw.precision}
    torch.set_num_threads(decode_threads)
    # Decoding is bound by the weights' memory traffic: bf16 weights halve it where the CPU has native
    # bf16. The scores above are done, so the fp32 weights can be cast in place.
    decode = cfg.decode_precision if cfg.decode_precision != "auto" else hw.precision
    loaded.prepare_decoding(bf16=decode == "bf16")
    transformers_decoding = {
        "threads": decode_threads,
        "precision": "bf16" if decode == "bf16" else "fp32",
        "tuned": "merged" if loaded.merged is not None else "adapter",
    }
    engine, gguf = open_decoder(cfg.engine, loaded, gguf_cache, log=log)
    # Every generation below passes the canary watch; the task suite's and the retrieval arms' are
    # also the cost of use of each arm.
    rss = PeakRss()
    canaries, cost = CanaryWatch(cfg.canaries), CostMeter(rss=rss)
    decoder = ObservedDecoder(engine, [canaries, cost], rss=rss)
    try:
        results["decoding"] = decoding_record(engine, cfg.engine, transformers_decoding, gguf)
        if gguf:
            timing["gguf"] = gguf["seconds"]
        suite = answer_suites(loaded, decoder, test_examples, cfg, results, timing, log)
        _patrol(decoder, cfg, config_dir, results, timing, log)
        if cfg.retrieval:
            with _timed(timing, "retrieval", log), decoder.part("retrieval", "+retrieval"):
                results["retrieval"] = _retrieval_arms(
                    loaded, decoder, suite, test_examples, retrieval_documents, cfg, log
                )
        if cfg.episodes:
            with _timed(timing, "episodes", log), decoder.part("episodes"):
                results["episodes"] = _episodes(decoder, cfg, log)
        if cfg.safety:
            with _timed(timing, "safety", log), decoder.part("safety"):
                results["safety"] = _safety(decoder, cfg, log)
    finally:
        engine.close()
    results["canary"] = canaries.record()
    results["cost"] = cost.summary()
    results["generations"] = decoder.record()
    if canaries.hits:
        log(f"evaluation: CANARY: {len(canaries.hits)} generation(s) wrote a planted secret")


def decoding_record(
    decoder: Decoder, requested: str, transformers_decoding: dict[str, Any], gguf: dict[str, Any]
) -> dict[str, Any]:
    """results["decoding"]: the engine that wrote each variant's answers, its weights and threads, and
    why "auto" fell back (`engine_fallback`)."""
    record: dict[str, Any] = {
        "engine": decoder.engine,
        "engine_requested": requested,
        "engine_fallback": decoder.fallback,
        "variants": decoder.variants(),
    }
    if decoder.engine == "transformers":
        return record | transformers_decoding
    return record | {
        "threads": decoder.thread_count(),  # per variant
        "side_by_side": decoder.side_by_side(len(record["variants"])),  # base and tuned at once
        "precision": "f16",  # the GGUF files' weights (gguf_cache.py writes f16)
        "tuned": "merged",
        "gguf": gguf,
        "transformers": transformers_decoding,  # the cross-check's side
    }


@dataclass
class SuiteAnswers:
    """The task suite's cases, prompts and scores per variant: what the retrieval arms compare with."""

    cases: list[TaskCase]
    prompts: list[Prompt]
    scores: dict[str, list[Any]]


def answer_suites(
    loaded: LoadedModel,
    decoder: ObservedDecoder,
    test_examples: Sequence[dict[str, Any]],
    cfg: EvaluationConfig,
    results: dict[str, Any],
    timing: dict[str, float],
    log: Log,
) -> SuiteAnswers:
    """The task suite and the generalization set answered by `decoder` (both variants) and scored;
    then, when that was not transformers, the cross-check of a sample against transformers."""
    answered: list[Answered] = []
    tok = loaded.tokenizer
    cases = build_task_suite(test_examples, cfg.max_cases_per_task)
    prompts = [case_prompt(tok, c, cfg) for c in cases]
    with _timed(timing, "task_suite", log), decoder.part("task suite"):
        results["task_suite"], scores = _score_cases(
            decoder, tok, cases, cfg, log, "task suite", answered, prompts=prompts
        )
        results["task_suite"].update(suite_coverage(cases))
        for w in results["task_suite"]["warnings"]:
            log(f"evaluation: WARNING: {w}")
    if cfg.generalization:
        with _timed(timing, "generalization", log), decoder.part("generalization"):
            results["generalization"], _ = _score_cases(
                decoder,
                tok,
                paraphrase_cases(),
                cfg,
                log,
                "generalization (hand-written paraphrases)",
                answered,
                group="generalization",
            )
    if decoder.engine != "transformers" and cfg.crosscheck_cases:
        with _timed(timing, "crosscheck", log):
            reference = ObservedDecoder(TransformersDecoder(loaded), decoder.observers[:1])  # canaries only
            with reference.part("crosscheck"):
                check = crosscheck(
                    answered,
                    decoder.engine,
                    reference,
                    per_variant=cfg.crosscheck_cases,
                    max_new_tokens=cfg.max_new_tokens,
                    batch_size=cfg.batch_size,
                )
        results["crosscheck"] = check
        log(
            f"evaluation: cross-check {decoder.engine} against transformers: {check['same']}/{check['cases']} "
            f"answers the same, {check['same_verdict']}/{check['cases']} verdicts the same"
        )
    return SuiteAnswers(cases, prompts, scores)


def _patrol(decoder: ObservedDecoder, cfg, config_dir, results, timing, log) -> None:
    patrol: list[dict[str, Any]] = []
    with _timed(timing, "patrol", log):
        for raw in cfg.patrol_suites:
            path = _resolve_suite_path(raw, config_dir)
            suite = load_suite(path)
            entry: dict[str, Any] = {
                "name": path.name if path.name != "promptfooconfig.yaml" else path.parent.name,
                "path": str(path),
                "warnings": suite.warnings,
            }
            cases: dict[str, dict[str, Any]] = {}
            for variant in VARIANTS:
                with decoder.part(f"patrol:{entry['name']}"):
                    rows, summary = run_patrol_suite(
                        decoder,
                        suite,
                        variant=variant,
                        max_new_tokens=cfg.patrol_max_new_tokens,
                        batch_size=cfg.batch_size,
                        max_cases=cfg.patrol_max_cases,
                    )
                entry[variant] = summary
                for r in rows:
                    cases.setdefault(r.case_id, {"case_id": r.case_id, "description": r.description})[
                        variant
                    ] = {"status": r.status, "output": r.output, "asserts": [a.__dict__ for a in r.asserts]}
                log(f"evaluation: patrol {entry['name']} ({variant}) accuracy {summary['accuracy']:.3f}")
            entry["cases"] = list(cases.values())
            patrol.append(entry)
    results["patrol"] = {"suites": patrol}


def _episodes(decoder: ObservedDecoder, cfg: EvaluationConfig, log: Log) -> dict[str, Any]:
    """The simulated town's episodes, each variant driving its own copy of every episode."""
    out: dict[str, Any] = {"max_steps": cfg.episode_max_steps, "max_new_tokens": cfg.episode_max_new_tokens}
    for variant in VARIANTS:
        out[variant] = run_episodes_batched(
            decoder,
            variant,
            max_steps=cfg.episode_max_steps,
            max_new_tokens=cfg.episode_max_new_tokens,
            batch_size=cfg.batch_size,
        )
        m = out[variant]
        log(
            f"evaluation: episodes ({variant}) {m['succeeded']}/{m['episodes']} succeeded; invalid commands "
            f"{m['invalid_commands']}, wasted steps {m['wasted_steps']}, policy refusals {m['policy_refusals']}"
        )
    return out


def _safety(decoder: ObservedDecoder, cfg: EvaluationConfig, log: Log) -> dict[str, Any]:
    """The safety suite: each case's answer by both variants, judged by the agent policy."""
    cases = spread_evenly(safety_mod.SAFETY_CASES, cfg.safety_max_cases)
    prompts = [c.prompt() for c in cases]
    by_variant = decoder.generate_variants(
        prompts, VARIANTS, max_new_tokens=cfg.safety_max_new_tokens, batch_size=cfg.batch_size
    )
    out: dict[str, Any] = {"cases": []}
    judged: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for k, case in enumerate(cases):
        row: dict[str, Any] = {
            "case_id": case.case_id,
            "role": case.role,
            "tempts": case.tempts,
            "safe": case.safe,
        }
        for variant in VARIANTS:
            j = safety_mod.judge(case, by_variant[variant][k].text)
            judged[variant].append(j)
            row[variant] = {**j, "output": by_variant[variant][k].text}
        out["cases"].append(row)
    for variant in VARIANTS:
        out[variant] = safety_mod.summarize(judged[variant])
        log(
            f"evaluation: safety ({variant}) {out[variant]['unsafe']}/{out[variant]['cases']} answers with a "
            f"command the policy refuses"
        )
    return out


def _retrieval_arms(
    loaded: LoadedModel,
    decoder: ObservedDecoder,
    suite: SuiteAnswers,
    test_examples: Sequence[dict[str, Any]],
    documents: Sequence[dict[str, Any]] | None,
    cfg: EvaluationConfig,
    log: Log,
) -> dict[str, Any]:
    """Base and tuned again on a subset of the task suite, with retrieved town context in the system
    message; the subset's scores of all four arms side by side."""
    excluded = retrieval_mod.source_ids_of(test_examples)
    docs = [d for d in documents or [] if d["doc_id"] not in excluded]
    out: dict[str, Any] = {
        "top_k": cfg.retrieval_top_k,
        "max_tokens": cfg.retrieval_max_tokens,
        "per_task": cfg.retrieval_max_per_task,
        "documents": len(docs),
        "excluded_test_sources": len(excluded),
    }
    if not docs or not suite.cases:
        out["skipped"] = (
            "no town documents to retrieve from (the scrubbed corpus is empty or absent)"
            if not docs
            else "the task suite has no case"
        )
        log(f"evaluation: retrieval arms skipped: {out['skipped']}")
        return out
    index = retrieval_mod.Index(retrieval_mod.passages(docs))
    out["passages"] = len(index.items)
    by_task: dict[str, list[int]] = {}
    for i, c in enumerate(suite.cases):
        by_task.setdefault(c.task, []).append(i)
    chosen = sorted(i for idx in by_task.values() for i in spread_evenly(idx, cfg.retrieval_max_per_task))
    tok = loaded.tokenizer

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False, verbose=False)["input_ids"])

    augmented, rows = [], []
    for i in chosen:
        prompt, case = suite.prompts[i], suite.cases[i]
        room = (
            loaded.context
            - count(render_prompt(prompt, tok))
            - (prompt.max_new_tokens or cfg.max_new_tokens)
            - 8
        )
        got = retrieval_mod.augment(
            prompt,
            index,
            case.reference,
            top_k=cfg.retrieval_top_k,
            max_tokens=max(0, min(cfg.retrieval_max_tokens, room)),
            count_tokens=count,
        )
        augmented.append(got.prompt)
        rows.append(
            {
                "passages": got.passages,
                "leak_filtered": got.leak_filtered,
                "context_tokens": got.context_tokens,
            }
        )
    cases = [suite.cases[i] for i in chosen]
    scored, _ = _score_cases(decoder, tok, cases, cfg, log, "retrieval arms", prompts=augmented)
    for row, case_row in zip(scored["cases"], rows, strict=True):
        row["retrieved"] = case_row
    out["cases"] = scored["cases"]
    out["leak_filtered"] = sum(r["leak_filtered"] for r in rows)
    out["arms"] = {}
    for variant in VARIANTS:
        out["arms"][variant] = summarize_tasks([suite.scores[variant][i] for i in chosen])
        out["arms"][f"{variant}+retrieval"] = scored[variant]
    return out


def collect_warnings(results: dict[str, Any]) -> list[str]:
    """Every warning of an evaluation in one list: task-suite coverage, each patrol suite's, a
    cross-check whose engines disagree on a verdict (the engine changed a score), prompts cut to fit
    the context (by part), and retrieval arms that could not run."""
    out = list((results.get("task_suite") or {}).get("warnings") or [])
    for s in (results.get("patrol") or {}).get("suites") or []:
        out += [f"patrol suite `{s['name']}`: {w}" for w in s.get("warnings") or []]
    check = results.get("crosscheck") or {}
    if check and check["same_verdict"] < check["cases"]:
        out.append(
            f"cross-check: {check['cases'] - check['same_verdict']} of {check['cases']} sampled answers "
            f"pass on one engine and fail on the other ({check['engine']} against {check['reference']})"
        )
    out += truncation_warnings(results.get("generations") or {})
    skipped = (results.get("retrieval") or {}).get("skipped")
    if skipped:
        out.append(f"retrieval arms not measured: {skipped}")
    return out


def flat_metrics(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """name -> {"base": x, "tuned": y}: the numbers the UI plots across materializations."""
    out: dict[str, dict[str, float]] = {}

    def put(name: str, base: Any, tuned: Any) -> None:
        if base is not None and tuned is not None:
            out[name] = {"base": float(base), "tuned": float(tuned)}

    h = results.get("heldout") or {}
    if h:
        put("heldout_loss", h["base"]["overall"]["loss"], h["tuned"]["overall"]["loss"])
        put("heldout_perplexity", h["base"]["overall"]["perplexity"], h["tuned"]["overall"]["perplexity"])
        for task, row in h["tuned"]["tasks"].items():
            put(f"heldout_loss/{task}", h["base"]["tasks"][task]["loss"], row["loss"])
    para = results.get("generalization") or {}
    if para:
        put("generalization", para["base"]["suite_score"], para["tuned"]["suite_score"])
    s = results.get("task_suite") or {}
    if s:
        put("suite_score", s["base"]["suite_score"], s["tuned"]["suite_score"])
        names = {"command": "command_accuracy", "exact": "exact_answer", "authoring": "formula_authoring"}
        for fam, name in names.items():
            if fam in s["tuned"]["families"]:
                put(name, s["base"]["families"][fam]["score"], s["tuned"]["families"][fam]["score"])
        if "command" in s["tuned"]["families"]:
            # a shell would run it: parses, the requested subcommand (accuracy also wants the flags)
            put(
                "command_validity",
                s["base"]["families"]["command"].get("validity"),
                s["tuned"]["families"]["command"].get("validity"),
            )
    suites = (results.get("patrol") or {}).get("suites") or []
    scored = sum(x["tuned"]["scored"] for x in suites)
    if scored:
        put(
            "patrol_accuracy",
            sum(x["base"]["passed"] for x in suites) / max(1, sum(x["base"]["scored"] for x in suites)),
            sum(x["tuned"]["passed"] for x in suites) / scored,
        )
    g = results.get("guard") or {}
    if g:
        put("general_text_perplexity", g["base"]["perplexity"], g["tuned"]["perplexity"])
    arms = (results.get("retrieval") or {}).get("arms") or {}
    if arms:  # the retrieval subset, prompted with the town's docs
        put(
            "retrieval_suite_score",
            arms["base+retrieval"]["suite_score"],
            arms["tuned+retrieval"]["suite_score"],
        )
    ep = results.get("episodes") or {}
    if ep.get("base") and ep.get("tuned"):
        put("episode_success", ep["base"]["success_rate"], ep["tuned"]["success_rate"])
        for name in ("invalid_commands", "wasted_steps", "policy_refusals"):
            put(f"episode_{name}", ep["base"][name], ep["tuned"][name])
    safety = results.get("safety") or {}
    if safety.get("base") and safety["base"]["cases"]:
        put("unsafe_rate", safety["base"]["unsafe_rate"], safety["tuned"]["unsafe_rate"])
    cost = (results.get("cost") or {}).get("arms") or {}
    if "base" in cost and "tuned" in cost:
        for name in ("latency_p50_ms", "latency_p95_ms", "tokens_per_s", "peak_rss_mb"):
            put(name, cost["base"][name], cost["tuned"][name])
    return out
