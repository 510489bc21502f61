"""The evaluation's greedy generation: transformers (batched; fp32 and bf16) against llama.cpp over
the GGUF, on the same prompts: wall time and whether the answers are the same.

    .venv/bin/python bench/eval_generate.py --bundle ARTIFACTS/registry/versions/v1/bundle \\
        --examples ARTIFACTS/corpus/splits/data/test.parquet --n 16 --max-new-tokens 64

Prompts are the test split's conversations up to their last assistant turn (as evaluation/tasks.py
builds them), evenly spread. transformers runs `evaluation.generate.generate` on the merged model
(one torch thread for a small model, batches of 8), in float32 and, where the CPU computes bf16
natively, in bfloat16 (what [evaluation] decode_precision = "auto" picks there); llama.cpp runs
`llamacpp.generate.generate` on model.gguf (f16). Answers are compared text for text.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _prompts(parquet: Path, n: int):
    import pyarrow.parquet as pq

    from gastown_ft.corpus.splits import example_from_record
    from gastown_ft.evaluation.generate import Prompt

    rows = [example_from_record(r) for r in pq.read_table(parquet).to_pylist()]
    rows = [r for r in rows if r["messages"] and r["messages"][-1]["role"] == "assistant"]
    step = (len(rows) - 1) / max(1, n - 1)
    picked = [rows[round(i * step)] for i in range(min(n, len(rows)))]
    return [Prompt(messages=list(r["messages"][:-1]), tools=r.get("tools") or None) for r in picked]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, required=True, help="an export bundle: merged/ and model.gguf")
    p.add_argument("--examples", type=Path, required=True, help="a test split parquet")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from gastown_ft.evaluation.generate import generate, load_model, torch_threads
    from gastown_ft.llamacpp import generate as gguf
    from gastown_ft.training.base_model import cpu_has_native_bf16

    prompts = _prompts(a.examples, a.n)
    results: dict[str, dict] = {}
    answers: dict[str, list[str]] = {}

    loaded = load_model(a.bundle / "merged")
    precisions = ["fp32"] + (["bf16"] if cpu_has_native_bf16() else [])
    for precision in precisions:
        if precision == "bf16":
            loaded.model.to(torch.bfloat16)
        with torch_threads(loaded, None):
            started = time.perf_counter()
            out = generate(loaded, prompts, variant="base", max_new_tokens=a.max_new_tokens, batch_size=8)
            wall = time.perf_counter() - started
        answers[f"transformers {precision}"] = [g.text for g in out]
        results[f"transformers {precision}"] = {"seconds": wall, "tokens": sum(g.new_tokens for g in out)}

    model = gguf.load_gguf_model(a.bundle / "model.gguf", a.bundle / "merged")
    started = time.perf_counter()
    out = gguf.generate(model, prompts, max_new_tokens=a.max_new_tokens)
    wall = time.perf_counter() - started
    model.close()
    answers["llama.cpp f16"] = [g.text for g in out]
    results["llama.cpp f16"] = {"seconds": wall, "tokens": sum(g.new_tokens for g in out)}

    ref = answers["llama.cpp f16"]
    print(f"{len(prompts)} prompts, up to {a.max_new_tokens} new tokens each, greedy; load {os.getloadavg()}")
    print(f"{'path':<20} {'wall s':>8} {'tokens':>7} {'tok/s':>7}  same answers as llama.cpp")
    for name, r in results.items():
        same = sum(x == y for x, y in zip(answers[name], ref, strict=True))
        r["same_as_llama_cpp"] = same
        print(
            f"{name:<20} {r['seconds']:>8.1f} {r['tokens']:>7} {r['tokens'] / r['seconds']:>7.1f}  {same}/{len(ref)}"
        )
    for name in answers:
        if name.startswith("transformers"):
            diff = [i for i, (x, y) in enumerate(zip(answers[name], ref, strict=True)) if x != y]
            for i in diff[:3]:
                common = len(os.path.commonprefix([answers[name][i], ref[i]]))
                print(f"  {name} #{i} differs after {common} chars: {ref[i][common : common + 40]!r}")
    if a.json:
        a.json.write_text(json.dumps({"results": results, "answers": answers}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
