"""The evaluation's answers on each engine, end to end: the task suite and the generalization set,
base and tuned, with transformers and with llama.cpp (GGUF conversion and the cross-check included).

    nice -n 19 .venv/bin/python bench/eval_engines.py --base BASE_DIR --adapter ADAPTER_DIR \\
        --examples ARTIFACTS/corpus/splits/data/test.parquet --config gastown-ft.toml \\
        --work /tmp/eval-engines --json /tmp/eval-engines/result.json

One process, the engines alternately (transformers, llama.cpp with an empty GGUF cache, llama.cpp
with the files cached, transformers: ABBA, so a machine that gets busier or quieter during the run
favours neither), each through `evaluation.run.answer_suites` as eval_report runs it. On a shared
machine compare the ratio, not the seconds. Held-out loss and the guard are the same on both engines
(always transformers) and are not run here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _examples(parquet: Path) -> list[dict]:
    import pyarrow.parquet as pq

    from gastown_ft.corpus.splits import example_from_record

    return [example_from_record(r) for r in pq.read_table(parquet).to_pylist()]


def _answers(results: dict) -> dict[tuple[str, str], tuple[str, bool]]:
    """(case, variant) -> (answer, passed)."""
    out = {}
    for part in ("task_suite", "generalization"):
        for c in (results.get(part) or {}).get("cases", []):
            for variant in ("base", "tuned"):
                out[(c["case_id"], variant)] = (c[variant]["output"], c[variant]["passed"])
    return out


def _run(name: str, engine: str, loaded, examples, cfg, cache: Path, log) -> dict:
    from gastown_ft.evaluation.engines import open_decoder
    from gastown_ft.evaluation.run import answer_suites

    results: dict = {}
    timing: dict[str, float] = {}
    started = time.perf_counter()
    decoder, gguf = open_decoder(engine, loaded, cache, log=log)
    try:
        answer_suites(loaded, decoder, examples, cfg, results, timing, log)
    finally:
        decoder.close()
    row = {
        "run": name,
        "engine": decoder.engine,
        "seconds": round(time.perf_counter() - started, 1),
        "gguf_seconds": gguf.get("seconds", 0.0),
        "converted": gguf.get("converted", []),
        "timing": timing,
        "load": os.getloadavg()[0],
    }
    for part in ("task_suite", "generalization"):
        for variant in ("base", "tuned"):
            r = results[part][variant]
            row[f"{part}_{variant}"] = f"{r['passed']}/{r['cases']}"
    row["suite_score_tuned"] = results["task_suite"]["tuned"]["suite_score"]
    if "crosscheck" in results:
        c = results["crosscheck"]
        row["crosscheck"] = {k: c[k] for k in ("cases", "same", "same_verdict", "variants", "differences")}
    row["answers"] = _answers(results)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", type=Path, required=True, help="the base model directory")
    p.add_argument("--adapter", type=Path, required=True, help="the LoRA adapter directory")
    p.add_argument("--examples", type=Path, required=True, help="a test split parquet")
    p.add_argument("--config", type=Path, required=True, help="gastown-ft.toml ([evaluation] is used)")
    p.add_argument("--work", type=Path, required=True, help="where the GGUF cache goes (emptied first)")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from gastown_ft.config import load_settings
    from gastown_ft.evaluation.generate import load_model, torch_threads
    from gastown_ft.training.device import detect

    cfg = load_settings(a.config).evaluation
    examples = _examples(a.examples)
    cache = a.work / "gguf"
    shutil.rmtree(cache, ignore_errors=True)

    def log(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)

    loaded = load_model(a.base, a.adapter)
    hw = detect("cpu", "auto", cfg.threads)
    decode = cfg.decode_precision if cfg.decode_precision != "auto" else hw.precision
    loaded.prepare_decoding(bf16=decode == "bf16")  # as eval_report decodes (and cross-checks)
    rows = []
    with torch_threads(loaded, cfg.threads) as threads:
        log(f"torch threads {threads}, transformers decodes in {decode}; {len(examples)} test examples")
        for name, engine in (
            ("transformers 1", "transformers"),
            ("llama.cpp 1 (converts)", "llama.cpp"),
            ("llama.cpp 2 (cached)", "llama.cpp"),
            ("transformers 2", "transformers"),
        ):
            rows.append(_run(name, engine, loaded, examples, cfg, cache, log))
            log(f"{name}: {rows[-1]['seconds']} s")
    t = [r for r in rows if r["engine"] == "transformers"]
    ll = [r for r in rows if r["engine"] == "llama.cpp"]
    t_mean = sum(r["seconds"] for r in t) / len(t)
    print()
    print(
        f"{'run':<24} {'total s':>7} {'gguf s':>7} {'answer s':>8} {'check s':>7} {'suite base':>10} "
        f"{'suite tuned':>11} {'gen base':>8} {'gen tuned':>9} {'load':>5}"
    )
    for r in rows:
        answering = r["timing"]["task_suite"] + r["timing"].get("generalization", 0.0)
        print(
            f"{r['run']:<24} {r['seconds']:>7.1f} {r['gguf_seconds']:>7.1f} {answering:>8.1f} "
            f"{r['timing'].get('crosscheck', 0.0):>7.1f} {r['task_suite_base']:>10} {r['task_suite_tuned']:>11} "
            f"{r['generalization_base']:>8} {r['generalization_tuned']:>9} {r['load']:>5.2f}"
        )
    for tr, lr in ((rows[0], rows[1]), (rows[3], rows[2])):  # each llama.cpp run against its neighbour
        print(f"{tr['run']} / {lr['run']}: {tr['seconds'] / lr['seconds']:.2f}x")
    for r in ll:
        print(f"mean transformers / {r['run']}: {t_mean / r['seconds']:.2f}x")
    keys = t[0]["answers"]
    same = sum(t[0]["answers"][k][0] == ll[0]["answers"][k][0] for k in keys)
    verdict = sum(t[0]["answers"][k][1] == ll[0]["answers"][k][1] for k in keys)
    print(
        f"all answers: {same}/{len(keys)} the same text on both engines, {verdict}/{len(keys)} the same verdict"
    )
    for r in ll:
        c = r["crosscheck"]
        print(
            f"{r['run']} cross-check: {c['same']}/{c['cases']} the same, {c['same_verdict']} the same verdict"
        )
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        for r in rows:
            r["answers"] = {f"{k[0]}|{k[1]}": v for k, v in r["answers"].items()}
        a.json.write_text(
            json.dumps({"rows": rows, "same_answers": same, "same_verdicts": verdict}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
