"""Training benchmark: tokens/s of the project's LoRA step (train_lora) against a plain PyTorch loop on the
same peft model, data, batch and sequence length; model FLOPs utilization against a matmul peak measured
in the same run; and the plan's memory estimate against the measured peak RSS of the training alone.

    .venv/bin/python bench/train.py
    .venv/bin/python bench/train.py --steps 20 --large-steps 5 --json /tmp/train-bench.json

Configurations: the embedded default (EmbeddedModelConfig() with pretrain_steps=0: random weights are
fine for timing) and a LLaMA of about 100M parameters (random weights), both on chat examples built from
the demo town. Each training (ours, plain) runs in its own process, so each peak RSS is its own.

Timing: both loops are timed over the same steps, from the end of step 1 (warm-up) to the end of step
N-1, so neither the first step nor our final checkpoint/adapter save is in the window; tokens are the
non-pad tokens of those steps' batches (the same batches, in the same order, for both).
Achieved FLOP/s use the standard 6 * total parameters * tokens/s (dense fine-tuning FLOPs); the LoRA-aware
column uses the plan's Estimate (flops_per_step / tokens_per_step * tokens/s). A script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MB = 1024 * 1024


def _plan(model_dir: Path, pairs: Path, steps: int, batch: int, seq: int):
    import pyarrow.parquet as pq

    from gastown_ft.config import TrainingConfig
    from gastown_ft.training.lora import plan_training

    examples = pq.read_table(pairs).to_pylist()
    cfg = TrainingConfig(max_steps=steps, batch_size=batch, max_seq_len=seq, checkpoint_every=10**6)
    return plan_training(model_dir, examples, [], cfg)


def _step_batches(plan) -> list[list[int]]:
    """The row indices of each optimizer step, as train_lora draws them (grad_accum 1)."""
    from gastown_ft.training.data import epoch_order

    n, b, per_epoch = len(plan.train_sequences), plan.cfg.batch_size, plan.batches_per_epoch
    out = []
    for s in range(plan.total_steps):
        epoch, pos = divmod(s, per_epoch)
        out.append(epoch_order(n, epoch, plan.cfg.seed)[pos * b : (pos + 1) * b])
    return out


def _window(plan, stamps: list[float]) -> dict:
    """tokens/s between the end of step 1 and the end of step N-1."""
    rows = plan.train_sequences
    tokens = [sum(len(rows[i]["input_ids"]) for i in idx) for idx in _step_batches(plan)]
    last = len(stamps) - 1 if len(stamps) > 2 else len(stamps)
    timed = sum(tokens[1:last])
    seconds = stamps[last - 1] - stamps[0]
    return {"tokens_per_s": timed / seconds, "timed_tokens": timed, "timed_seconds": seconds}


def child_ours(model_dir: Path, pairs: Path, steps: int, batch: int, seq: int, out_dir: Path) -> dict:
    from gastown_ft.training.lora import peak_rss_bytes, train_lora

    plan = _plan(model_dir, pairs, steps, batch, seq)
    stamps: list[float] = []
    res = train_lora(plan, out_dir, resume=False, progress=lambda p: stamps.append(time.perf_counter()))
    est = plan.estimate
    return {
        **_window(plan, stamps),
        "reported_tokens_per_s": res.tokens_per_s,
        "steps": res.steps_done,
        "n_total": plan.n_total,
        "n_trainable": plan.n_trainable,
        "rows": len(plan.train_sequences),
        "estimated_peak_bytes": est.peak_bytes,
        "estimate_breakdown": est.breakdown,
        "flops_per_token_lora": est.flops_per_step / max(1, est.tokens_per_step),
        "estimated_tokens_per_s": est.tokens_per_s,
        "peak_rss_bytes": peak_rss_bytes(),
        "final_loss": res.train_loss[-1],
    }


def child_plain(model_dir: Path, pairs: Path, steps: int, batch: int, seq: int) -> dict:
    """The minimal loop: HF forward with labels (its own loss) + backward + AdamW step."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from gastown_ft.training.data import collate
    from gastown_ft.training.lora import peak_rss_bytes

    plan = _plan(model_dir, pairs, steps, batch, seq)
    torch.set_num_threads(len(os.sched_getaffinity(0)) or 1)
    torch.manual_seed(plan.cfg.seed)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.config.use_cache = False
    model = get_peft_model(model, plan.lora_config())
    model.train()
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=plan.cfg.learning_rate, weight_decay=0.0
    )
    rows, pad = plan.train_sequences, plan.pad_id
    stamps, loss = [], None
    for idx in _step_batches(plan):
        b = collate([rows[i] for i in idx], pad)
        loss = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        stamps.append(time.perf_counter())
    return {**_window(plan, stamps), "peak_rss_bytes": peak_rss_bytes(), "final_loss": float(loss)}


def run_child(kind: str, model_dir: Path, pairs: Path, steps: int, batch: int, seq: int, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--model", str(model_dir), "--pairs", str(pairs)]
    cmd += ["--steps", str(steps), "--batch", str(batch), "--seq", str(seq), "--out", str(work)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"child {kind} on {model_dir.name} failed ({out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def prepare(work: Path) -> tuple[Path, Path, int]:
    """Demo town -> read/scrub/pairs into a temp store; the embedded model (no pretraining)."""
    from gastown_ft.assets.training import _scrubbed_texts
    from gastown_ft.config import CorpusConfig, EmbeddedModelConfig, TownConfig
    from gastown_ft.corpus import stages
    from gastown_ft.corpus.documents import SOURCES
    from gastown_ft.demo.town import build_demo_town
    from gastown_ft.training.base_model import build_embedded_model

    t = time.perf_counter()
    town = build_demo_town(work / "demo")
    store = stages.ArtifactStore(work / "artifacts")
    tc = TownConfig(root=town.root, claude_projects_dir=town.claude_projects_dir)
    for src in SOURCES:
        stages.read_stage(tc, store, src)
    stages.scrub_stage(store)
    st, _, _ = stages.pairs_stage(store, CorpusConfig())
    rep = build_embedded_model(
        _scrubbed_texts(store), work / "embedded", EmbeddedModelConfig(pretrain_steps=0), seed=0
    )
    print(
        f"(demo town, {st['rows']} chat examples, embedded model of {rep.parameters:,} parameters "
        f"in {time.perf_counter() - t:.1f}s)",
        flush=True,
    )
    return work / "embedded", store.path("corpus", "instruction_pairs"), rep.vocab_size


def build_large(embedded: Path, out: Path, args) -> int:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(embedded))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=args.large_hidden,
        intermediate_size=args.large_intermediate,
        num_hidden_layers=args.large_layers,
        num_attention_heads=args.large_heads,
        num_key_value_heads=args.large_heads,
        max_position_embeddings=1024,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", choices=("ours", "plain"))
    ap.add_argument("--model", type=Path)
    ap.add_argument("--pairs", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps, embedded default")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--large-steps", type=int, default=5)
    ap.add_argument("--large-batch", type=int, default=4)
    ap.add_argument("--large-seq", type=int, default=256)
    ap.add_argument("--large-hidden", type=int, default=768)
    ap.add_argument("--large-layers", type=int, default=12)
    ap.add_argument("--large-heads", type=int, default=12)
    ap.add_argument("--large-intermediate", type=int, default=2048)
    ap.add_argument("--json", type=Path, help="also write all figures here")
    args = ap.parse_args()
    if args.child == "ours":
        print(
            json.dumps(child_ours(args.model, args.pairs, args.steps, args.batch, args.seq, args.out / "run"))
        )
        return
    if args.child == "plain":
        print(json.dumps(child_plain(args.model, args.pairs, args.steps, args.batch, args.seq)))
        return

    from gastown_ft.training.estimate import measure_matmul_flops

    threads = len(os.sched_getaffinity(0)) or 1
    results: dict = {"threads": threads, "configs": []}
    with tempfile.TemporaryDirectory(prefix="gtft-train-bench-") as tmp:
        work = Path(tmp)
        embedded, pairs, _vocab = prepare(work)
        n_large = build_large(embedded, work / "large", args)
        print(f"(LLaMA-shaped large model of {n_large:,} parameters saved)", flush=True)
        configs = [
            ("embedded", embedded, args.steps, args.batch, args.seq),
            ("llama-100M", work / "large", args.large_steps, args.large_batch, args.large_seq),
        ]
        for name, model_dir, steps, batch, seq in configs:
            print(f"{name}: {steps} steps, batch {batch}, seq {seq}, {threads} threads", flush=True)
            ours = run_child("ours", model_dir, pairs, steps, batch, seq, work / f"{name}-ours")
            print(f"  ours : {ours['tokens_per_s']:9.0f} tokens/s  loss {ours['final_loss']:.3f}", flush=True)
            plain = run_child("plain", model_dir, pairs, steps, batch, seq, work / f"{name}-plain")
            print(
                f"  plain: {plain['tokens_per_s']:9.0f} tokens/s  loss {plain['final_loss']:.3f}", flush=True
            )
            peak = measure_matmul_flops(1.0, threads=threads)
            achieved = 6 * ours["n_total"] * ours["tokens_per_s"]
            achieved_lora = ours["flops_per_token_lora"] * ours["tokens_per_s"]
            results["configs"].append(
                {
                    "config": name,
                    "steps": steps,
                    "batch": batch,
                    "seq": seq,
                    "params": ours["n_total"],
                    "ours": ours,
                    "plain": plain,
                    "ratio": ours["tokens_per_s"] / plain["tokens_per_s"],
                    "achieved_flops": achieved,
                    "achieved_flops_lora_estimate": achieved_lora,
                    "matmul_peak_flops": peak,
                    "mfu": achieved / peak,
                    "mfu_lora_estimate": achieved_lora / peak,
                }
            )

    print(
        "\nconfig          params  tok/s ours tok/s plain  ratio  GFLOP/s  (LoRA est)  peak GFLOP/s"
        "   MFU %  (LoRA est)  est. peak MB  peak RSS MB"
    )
    for r in results["configs"]:
        print(
            f"{r['config']:<12} {r['params'] / 1e6:8.1f}M {r['ours']['tokens_per_s']:11.0f} "
            f"{r['plain']['tokens_per_s']:11.0f} {r['ratio']:6.2f} {r['achieved_flops'] / 1e9:8.1f} "
            f"{r['achieved_flops_lora_estimate'] / 1e9:11.1f} {r['matmul_peak_flops'] / 1e9:13.1f} "
            f"{100 * r['mfu']:7.1f} {100 * r['mfu_lora_estimate']:11.1f} "
            f"{r['ours']['estimated_peak_bytes'] / MB:13.0f} {r['ours']['peak_rss_bytes'] / MB:12.0f}"
        )
    print(
        "\nratio = ours / plain (goal >= 0.9). GFLOP/s = 6 x total params x tokens/s (ours); LoRA est ="
        " the plan's flops_per_step / tokens_per_step x tokens/s. Peak RSS: the child running only train_lora"
        " (plain loop's own RSS: "
        + ", ".join(f"{r['plain']['peak_rss_bytes'] / MB:.0f} MB" for r in results["configs"])
        + ")."
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
