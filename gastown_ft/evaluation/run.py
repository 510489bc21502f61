"""Base against tuned, end to end: held-out loss, the task suite, patrol suites, the guard, the decision.

`evaluate_adapter` is what the `eval_report` asset runs; `run_patrol_suite` is also what
`gastown-ft eval` runs. Both models answer the same prompts with greedy decoding (see generate.py),
on the engine `[evaluation] engine` picks (engines.py): llama.cpp over GGUF files where it can run,
with a sample of the answers checked against transformers (crosscheck.py), else transformers.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from gastown_ft.config import EvaluationConfig
from gastown_ft.evaluation import guard as guard_mod
from gastown_ft.evaluation.compare import decide
from gastown_ft.evaluation.crosscheck import Answered, crosscheck
from gastown_ft.evaluation.engines import Decoder, TransformersDecoder, open_decoder
from gastown_ft.evaluation.generate import LoadedModel, Prompt, load_model, torch_threads
from gastown_ft.evaluation.heldout import encode_by_task, heldout_losses
from gastown_ft.evaluation.paraphrase import paraphrase_cases
from gastown_ft.evaluation.promptfoo import CaseResult, JavaScript, Suite, load_suite, score_output
from gastown_ft.evaluation.promptfoo import summarize as summarize_patrol
from gastown_ft.evaluation.tasks import build_task_suite, reference_text, score_case, suite_coverage
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
        [Prompt(c.messages) for c in cases],
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
    return results, summarize_patrol(results)


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


def _task_suite(
    decoder: Decoder, tok, examples, cfg: EvaluationConfig, log: Log, answered: list[Answered]
) -> dict[str, Any]:
    cases = build_task_suite(examples, cfg.max_cases_per_task)
    coverage = suite_coverage(cases)
    for w in coverage["warnings"]:
        log(f"evaluation: WARNING: {w}")
    out = _score_cases(decoder, tok, cases, cfg, log, "task suite", answered)
    out.update(coverage)
    return out


def _score_cases(
    decoder: Decoder,
    tok,
    cases,
    cfg: EvaluationConfig,
    log: Log,
    what: str,
    answered: list[Answered] | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    """Both variants' greedy answers to `cases`, scored: per-variant summaries and every case. Each
    case with its prompt and answers is added to `answered` (for the cross-check), under its task or
    `group`."""
    prompts = []
    for case in cases:
        ref_tokens = len(
            tok(reference_text(case.reference), add_special_tokens=False, verbose=False)["input_ids"]
        )
        case.reference_tokens = ref_tokens
        prompts.append(
            Prompt(
                case.prompt.messages,
                case.prompt.tools,
                min(cfg.max_new_tokens, answer_budget(case.reference, ref_tokens)),
            )
        )
    per_case: list[dict[str, Any]] = [
        {"case_id": c.case_id, "task": c.task, "family": c.family} for c in cases
    ]
    out: dict[str, Any] = {}
    answers: list[dict[str, Any]] = [{} for _ in cases]
    by_variant = decoder.generate_variants(
        prompts, VARIANTS, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size
    )
    for variant in VARIANTS:
        gens = by_variant[variant]
        scores = [score_case(c, g) for c, g in zip(cases, gens, strict=True)]
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
    return out


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
    log: Log = lambda _msg: None,
) -> dict[str, Any]:
    """Everything eval_report measures, as one JSON-ready dict (decision included).

    `gguf_cache`: where llama.cpp's GGUF files are kept between runs (see llamacpp/gguf_cache.py);
    None: a temporary directory, removed afterwards."""
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
        _measure(loaded, test_examples, cfg, max_seq_len, config_dir, cache, results, timing, log)
    results["metrics"] = flat_metrics(results)
    results["warnings"] = collect_warnings(results)
    decision = decide(
        results,
        suite_min_gain=cfg.suite_min_gain,
        suite_floor=cfg.suite_floor,
        patrol_tolerance=cfg.suite_tolerance,
        max_ppl_ratio=cfg.guard_max_ppl_ratio,
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


def _measure(loaded, test_examples, cfg, max_seq_len, config_dir, gguf_cache, results, timing, log) -> None:
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
    decoder, gguf = open_decoder(cfg.engine, loaded, gguf_cache, log=log)
    try:
        results["decoding"] = decoding_record(decoder, cfg.engine, transformers_decoding, gguf)
        if gguf:
            timing["gguf"] = gguf["seconds"]
        answer_suites(loaded, decoder, test_examples, cfg, results, timing, log)
        _patrol(decoder, cfg, config_dir, results, timing, log)
    finally:
        decoder.close()


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


def answer_suites(
    loaded: LoadedModel,
    decoder: Decoder,
    test_examples: Sequence[dict[str, Any]],
    cfg: EvaluationConfig,
    results: dict[str, Any],
    timing: dict[str, float],
    log: Log,
) -> None:
    """The task suite and the generalization set answered by `decoder` (both variants) and scored;
    then, when that was not transformers, the cross-check of a sample against transformers."""
    answered: list[Answered] = []
    tok = loaded.tokenizer
    with _timed(timing, "task_suite", log):
        results["task_suite"] = _task_suite(decoder, tok, test_examples, cfg, log, answered)
    if cfg.generalization:
        with _timed(timing, "generalization", log):
            results["generalization"] = _score_cases(
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
            check = crosscheck(
                answered,
                decoder.engine,
                TransformersDecoder(loaded),
                per_variant=cfg.crosscheck_cases,
                max_new_tokens=cfg.max_new_tokens,
                batch_size=cfg.batch_size,
            )
        results["crosscheck"] = check
        log(
            f"evaluation: cross-check {decoder.engine} against transformers: {check['same']}/{check['cases']} "
            f"answers the same, {check['same_verdict']}/{check['cases']} verdicts the same"
        )


def _patrol(decoder: Decoder, cfg, config_dir, results, timing, log) -> None:
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


def collect_warnings(results: dict[str, Any]) -> list[str]:
    """Every warning of an evaluation in one list: task-suite coverage, each patrol suite's, then a
    cross-check whose engines disagree on a verdict (the engine changed a score)."""
    out = list((results.get("task_suite") or {}).get("warnings") or [])
    for s in (results.get("patrol") or {}).get("suites") or []:
        out += [f"patrol suite `{s['name']}`: {w}" for w in s.get("warnings") or []]
    check = results.get("crosscheck") or {}
    if check and check["same_verdict"] < check["cases"]:
        out.append(
            f"cross-check: {check['cases'] - check['same_verdict']} of {check['cases']} sampled answers "
            f"pass on one engine and fail on the other ({check['engine']} against {check['reference']})"
        )
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
    return out
