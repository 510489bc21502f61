"""The hivemind backend: the same model, data and loss as `training.lora`, trained by several peers.

The step is `training.lora.StepRunner`, as in a local run; only the optimizer and the choice of rows
differ. Each peer runs micro-batches of its own shuffled order of the train split;
`hivemind.Optimizer` (gated by the swarm key, see `averagers.py`) sums their samples until the swarm
reaches `target_batch_size`, then averages the gradients of the LoRA parameters only, takes one AdamW
step on every peer and, every `average_state_every` steps, averages the LoRA weights too. One such
swarm step is one optimizer step of the plan, so the swarm takes the plan's steps; the more peers, the
sooner.

Peer lifecycle: start the DHT (admitted with the swarm key); the first peer publishes the run manifest,
a joining one checks its own against it; announce membership; wait at the start barrier; build the
model; a joining peer loads the current state from the others; train; save the adapter. A peer that
dies is dropped by the others after the averaging timeouts; the run goes on without it.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from gastown_ft import atomic
from gastown_ft.config import SwarmConfig
from gastown_ft.errors import GastownFTError
from gastown_ft.swarm.keys import SwarmKey
from gastown_ft.swarm.manifest import RunManifest, check_compatible, fetch_manifest, publish_manifest
from gastown_ft.swarm.members import announce, listed, wait_for_peers
from gastown_ft.swarm.network import start_dht, visible_maddrs
from gastown_ft.training.allocator import TRIM_EVERY, release_freed_memory
from gastown_ft.training.lora import (
    STATE_FILE,
    LRSchedule,
    StepRunner,
    TrainingPlan,
    TrainResult,
    evaluate_loss,
    peak_rss_bytes,
    prepare_model,
    save_adapter,
    seed_everything,
)


def target_batch_size(plan: TrainingPlan, cfg: SwarmConfig) -> int:
    return cfg.target_batch_size or plan.cfg.batch_size * plan.cfg.grad_accum


def make_manifest(
    plan: TrainingPlan, cfg: SwarmConfig, run_id: str, corpus_version: str, base_model_fp: str
) -> RunManifest:
    from gastown_ft.provenance import project_version

    return RunManifest(
        run_id=run_id,
        corpus_version=corpus_version,
        base_model=base_model_fp,
        plan=plan.fingerprint,
        project=str(project_version()),
        target_batch_size=target_batch_size(plan, cfg),
        total_steps=plan.total_steps,
        compression=cfg.compression,
        average_state_every=cfg.average_state_every,
    )


def compressions(name: str):
    """(gradients, weights) compression. 8-bit suits gradients only: weights go as float16 then."""
    from hivemind.compression import Float16Compression, NoCompression, Uniform8BitQuantization

    if name == "none":
        return NoCompression(), NoCompression()
    if name == "uniform8bit":
        return Uniform8BitQuantization(), Float16Compression()
    return Float16Compression(), Float16Compression()


def payload_bytes(tensors, compression) -> int:
    """Bytes of `tensors` as they travel (serialized after compression)."""
    from hivemind.compression import CompressionInfo

    return sum(compression.compress(t.detach(), CompressionInfo.from_tensor(t)).ByteSize() for t in tensors)


@dataclass
class SwarmStats:
    run_id: str
    peer_id: str
    maddrs: list[str]
    first: bool
    peers_at_start: int = 0
    peers_seen: int = 0  # most peers the progress tracker counted at once
    members: int = 0  # peers that announced themselves in this run by its end (those that left included)
    rounds: int = 0  # swarm steps this peer took part in (not those it loaded)
    averaged_rounds: int = 0  # of those, the steps whose gradients it averaged with at least one other peer
    largest_group: int = 0  # most peers in one gradient averaging round (this peer included)
    round_seconds: list[float] = field(default_factory=list)  # wall time of each step call that averaged
    samples: int = 0  # sequences this peer trained on
    samples_per_s: float = 0.0
    loaded_state_at_step: int | None = None
    grad_bytes_per_round: int = 0  # the averaged gradient tensors, compressed
    state_bytes_per_round: int = 0  # the averaged LoRA weights, compressed (every average_state_every)
    trainable_bytes: int = 0  # the LoRA parameters in float32
    full_model_bytes: int = 0  # every parameter of the model in float32
    compression: str = "float16"

    def sent_bytes_per_round(self, n_peers: int | None = None) -> int:
        """Bytes one peer sends in a round of butterfly all-reduce among n peers: its payload split in n
        parts, n-1 of them sent out, and its averaged part sent back to n-1 peers: 2(n-1)/n x payload."""
        n = max(1, n_peers or self.peers_seen or 1)
        return int(2 * (n - 1) / n * self.grad_bytes_per_round)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sent_bytes_per_round"] = self.sent_bytes_per_round()
        d["mean_round_seconds"] = (
            sum(self.round_seconds) / len(self.round_seconds) if self.round_seconds else None
        )
        return d


@dataclass
class SwarmResult:
    train: TrainResult
    swarm: SwarmStats


def train_swarm(
    plan: TrainingPlan,
    out_dir: str | os.PathLike,
    cfg: SwarmConfig,
    *,
    key: SwarmKey,
    manifest: RunManifest,
    first: bool,
    initial_peers: list[str] | None = None,
    identity_file: Path | None = None,
    on_listening: Callable[[list[str]], None] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
) -> SwarmResult:
    """Train the adapter of `plan` as one peer of the swarm run `manifest.run_id` (module docstring)."""
    import torch

    plan.check_budget()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    say = log or (lambda _m: None)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(plan.cfg.threads or len(os.sched_getaffinity(0)) or 1)
    dht = start_dht(
        cfg, key, list(initial_peers if initial_peers is not None else cfg.initial_peers), identity_file
    )
    opt = None
    try:
        stats = SwarmStats(
            run_id=manifest.run_id,
            peer_id=str(dht.peer_id),
            maddrs=visible_maddrs(dht),
            first=first,
            compression=cfg.compression,
        )
        if on_listening is not None:
            on_listening(stats.maddrs)
        _agree_on_manifest(dht, key, manifest, first, cfg.join_timeout_s)
        announce(dht, key, manifest.run_id, "members")  # before any averager RPC: the gates check it
        opt, model, params = _build(plan, cfg, dht, key, manifest)
        grad_c, state_c = compressions(cfg.compression)
        stats.grad_bytes_per_round = payload_bytes(params, grad_c)
        stats.state_bytes_per_round = payload_bytes(params, state_c)
        stats.trainable_bytes = sum(p.numel() * 4 for p in params)
        stats.full_model_bytes = sum(p.numel() * 4 for p in model.parameters())
        if not first:
            opt.load_state_from_peers()
            stats.loaded_state_at_step = opt.local_epoch
            say(f"loaded the swarm's state at step {opt.local_epoch}")
        announce(dht, key, manifest.run_id, "ready")
        stats.peers_at_start = wait_for_peers(
            dht, key, manifest.run_id, cfg.min_peers, cfg.start_timeout_s, should_stop=should_stop, log=say
        )
        say(f"{stats.peers_at_start} peer(s) ready in run {manifest.run_id}; training")

        def count_members() -> int:  # at the end: late joiners count too
            return len(listed(dht, key, manifest.run_id, "members"))

        result = _train(
            plan,
            out_dir,
            opt,
            model,
            stats,
            first,
            progress,
            should_stop,
            count_members,
            sync_timeout_s=max(5.0, 3 * cfg.matchmaking_time),
        )
        return SwarmResult(result, stats)
    finally:
        if opt is not None:
            try:
                opt.shutdown()
            except Exception as e:  # a failed goodbye must not hide the run's own outcome
                say(f"swarm optimizer shutdown: {e}")
        dht.shutdown()
        torch.set_num_threads(previous_threads)


def _agree_on_manifest(dht, key: SwarmKey, manifest: RunManifest, first: bool, join_timeout_s: float) -> None:
    if first:
        existing = fetch_manifest(dht, key, manifest.run_id, timeout_s=0)
        if existing is not None:  # a restarted first peer, or a run id reused by mistake
            check_compatible(manifest, existing)
        else:
            publish_manifest(dht, key, manifest)
        return
    remote = fetch_manifest(dht, key, manifest.run_id, timeout_s=join_timeout_s)
    if remote is None:
        raise GastownFTError(
            f"no run {manifest.run_id} in this swarm (looked for {join_timeout_s:.0f} s)",
            hint="copy the run id that the first machine printed; it is still running?",
        )
    check_compatible(manifest, remote)


def _build(plan: TrainingPlan, cfg: SwarmConfig, dht, key: SwarmKey, manifest: RunManifest):
    import torch

    from gastown_ft.swarm.averagers import SwarmOptimizer

    tcfg = plan.cfg
    seed_everything(tcfg.seed)  # every peer starts from the same LoRA initialisation
    model = prepare_model(plan)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]  # only these are averaged
    grad_c, state_c = compressions(cfg.compression)
    opt = SwarmOptimizer(
        swarm_key=key,
        run_id=manifest.run_id,
        dht=dht,
        target_batch_size=manifest.target_batch_size,
        params=params,
        optimizer=partial(torch.optim.AdamW, lr=tcfg.learning_rate, weight_decay=0.0),
        scheduler=partial(
            torch.optim.lr_scheduler.LambdaLR,
            lr_lambda=LRSchedule(plan.total_steps, plan.warmup_steps, tcfg.lr_schedule),
        ),
        matchmaking_time=cfg.matchmaking_time,
        averaging_timeout=cfg.averaging_timeout,
        allreduce_timeout=cfg.averaging_timeout,
        next_chunk_timeout=cfg.next_chunk_timeout,
        load_state_timeout=cfg.load_state_timeout,
        grad_compression=grad_c,
        state_averaging_compression=state_c,
        average_state_every=cfg.average_state_every,
        # hivemind warns (rare deadlocks) unless a leader answers faster than a group forms.
        averager_opts={"request_timeout": min(cfg.request_timeout, cfg.matchmaking_time / 2)},
        # While it sees no peer, the tracker looks again after default_refresh_period (3 s in hivemind):
        # long enough for the first peer to take its first steps alone. Look as often as groups form.
        tracker_opts={
            "metadata_expiration": cfg.peer_expiration_s,
            "default_refresh_period": min(3.0, cfg.matchmaking_time),
        },
        client_mode=cfg.client_mode,
    )
    return opt, model, params


def _await_tracker(opt, n_peers: int, timeout_s: float, should_stop) -> None:
    """Until hivemind's progress tracker counts `n_peers` (it learns of a peer once that peer reported
    samples, at its next refresh), at most `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while opt.tracker.global_progress.num_peers < n_peers and time.monotonic() < deadline:
        if should_stop is not None and should_stop():
            return
        time.sleep(0.1)


def _train(
    plan,
    out_dir: Path,
    opt,
    model,
    stats: SwarmStats,
    first,
    progress,
    should_stop,
    count_members,
    *,
    sync_timeout_s: float,
) -> TrainResult:
    cfg = plan.cfg
    started = time.perf_counter()
    rows, pad_id = plan.train_sequences, plan.pad_id
    # Each peer walks its own shuffle of the train split, so peers contribute different examples.
    rng = random.Random(f"{cfg.seed}:{stats.peer_id}")
    queue: list[int] = []

    def next_rows() -> list[int]:
        while len(queue) < cfg.batch_size:
            order = list(range(len(rows)))
            rng.shuffle(order)
            queue.extend(order)
        taken = queue[: cfg.batch_size]
        del queue[: cfg.batch_size]
        return taken

    val_loss: list[tuple[int, float]] = []
    if first and plan.val_sequences and opt.local_epoch == 0:
        v = evaluate_loss(model, plan.val_sequences, pad_id, cfg.batch_size)
        if v is not None:
            val_loss.append((0, v))
    train_loss: list[float] = []
    epoch_losses: list[float] = []
    status = "completed"
    runner = StepRunner(model, rows, pad_id)
    loop_start = time.perf_counter()
    # A fresh run's peers passed the barrier together; each waits after its first micro-batch until its
    # tracker counts them all, or the first peer gathers the first step's target batch on its own.
    sync_with = stats.peers_at_start if opt.local_epoch == 0 and stats.peers_at_start > 1 else 0
    while opt.local_epoch < plan.total_steps:
        if should_stop is not None and should_stop():
            status = "cancelled"
            break
        # One micro-batch a call: hivemind sums the peers' samples up to the target batch, so each
        # micro-batch's loss is normalised over its own (weighted) trained tokens.
        taken = next_rows()
        epoch_losses.append(runner.run([taken]))
        stats.samples += len(taken)
        before, t0 = opt.local_epoch, time.perf_counter()
        opt.step(batch_size=len(taken))
        opt.zero_grad()
        if opt.local_epoch > before and opt.local_epoch % TRIM_EVERY == 0:  # as the local loop does
            release_freed_memory()
        if sync_with:
            _await_tracker(opt, sync_with, sync_timeout_s, should_stop)
            sync_with = 0
        stats.peers_seen = max(stats.peers_seen, opt.tracker.global_progress.num_peers)
        if opt.local_epoch > before:
            if opt.local_epoch == before + 1:
                stats.rounds += 1
                stats.round_seconds.append(time.perf_counter() - t0)
            train_loss.append(sum(epoch_losses) / len(epoch_losses))
            epoch_losses.clear()
            if progress is not None:
                progress(
                    runner.progress(
                        opt.local_epoch,
                        plan.total_steps,
                        train_loss[-1],
                        opt.state_averager.optimizer.param_groups[0]["lr"],
                        time.perf_counter() - loop_start,
                        opt.local_epoch - (stats.loaded_state_at_step or 0),
                        peers=opt.tracker.global_progress.num_peers,
                    )
                )
    # Apply a state averaging still running in the background, so the saved weights are the swarm's.
    opt.state_averager.step(wait_for_delayed_updates=True)
    stats.members = count_members()
    stats.averaged_rounds = sum(1 for n in opt.group_sizes if n > 1)
    stats.largest_group = max(opt.group_sizes, default=1 if stats.rounds else 0)
    loop_seconds = time.perf_counter() - loop_start
    stats.samples_per_s = stats.samples / loop_seconds if loop_seconds > 0 else 0.0

    adapter_dir = None
    steps = min(opt.local_epoch, plan.total_steps)
    if status == "completed":
        v = evaluate_loss(model, plan.val_sequences, pad_id, cfg.batch_size)
        if v is not None:
            val_loss.append((steps, v))
        adapter_dir = save_adapter(model, out_dir)
    result = TrainResult(
        status=status,
        out_dir=out_dir,
        adapter_dir=adapter_dir,
        steps_done=steps,
        total_steps=plan.total_steps,
        train_loss=train_loss,
        val_loss=val_loss,
        tokens_per_s=runner.tokens / loop_seconds if runner.tokens and loop_seconds > 0 else 0.0,
        peak_rss_bytes=peak_rss_bytes(),
        estimated_peak_bytes=plan.estimate.peak_bytes,
        estimated_tokens_per_s=plan.estimate.tokens_per_s,
        wall_seconds=time.perf_counter() - started,
        resumed_from_step=stats.loaded_state_at_step,
        last_checkpoint=None,
        model=model,
    )
    state = result.state()
    state["backend"] = "hivemind"
    state["swarm"] = stats.to_dict()
    state["config"] = cfg.model_dump(mode="json")
    state["lora"] = plan.lora_kwargs()
    state["n_trainable"], state["n_total"] = plan.n_trainable, plan.n_total
    atomic.write_json(out_dir / STATE_FILE, state, indent=2)
    return result
