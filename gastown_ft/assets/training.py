"""Training assets: `base_model` -> `lora_adapter` (group `training`). Thin adapters over training/.

Both carry the op tag and run in the `train` job tagged `gastown-ft/stage=training`, which the run
queue (dagster.yaml) limits to one at a time: a second training run waits in the queue.
"""

import hashlib
import json
import time
from typing import Any

import pyarrow.parquet as pq
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    Failure,
    MaterializeResult,
    MetadataValue,
    ResourceParam,
    asset,
    define_asset_job,
)

from gastown_ft.artifacts import ArtifactStore
from gastown_ft.config import Settings
from gastown_ft.errors import GastownFTError
from gastown_ft.provenance import project_version
from gastown_ft.resources import GastownSettings
from gastown_ft.town.hooks import reports_to_town
from gastown_ft.training.inputs import plan_for, resolve_configured_base

TRAINING_TAGS = {"gastown-ft/stage": "training"}
LOG_EVERY_S = 10.0


def _fmt_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


class _ProgressLog:
    """Training progress to the run log (at most every LOG_EVERY_S) and to an optional sink (the CLI bar)."""

    def __init__(self, context: AssetExecutionContext, what: str, sink: Any = None) -> None:
        self.context, self.what, self.last, self.sink = context, what, 0.0, sink

    def __call__(self, ev: dict) -> None:
        if callable(self.sink):
            self.sink({"what": self.what, **ev})
        now = time.monotonic()
        done = ev.get("step") == ev.get("total_steps")
        if now - self.last >= LOG_EVERY_S or done:
            self.last = now
            total = ev.get("total_steps") or ev.get("steps")
            self.context.log.info(
                f"{self.what}: step {ev.get('step')}/{total} loss {ev.get('loss', float('nan')):.4f} "
                f"{ev.get('tokens_per_s', 0):,.0f} tokens/s ETA {_fmt_eta(ev.get('eta_s', 0))}"
            )


def _scrubbed_texts(store: ArtifactStore):
    path = store.path("corpus", "scrubbed_documents")

    def texts():
        for batch in pq.ParquetFile(path).iter_batches(batch_size=512, columns=["text"]):
            yield from batch.column(0).to_pylist()

    return texts


def _embedded_key(store: ArtifactStore, cfg: Settings) -> str:
    """What the embedded model depends on: the scrubbed corpus and its own settings."""
    ids = pq.read_table(store.path("corpus", "scrubbed_documents"), columns=["content_hash"])
    h = hashlib.sha256(cfg.training.embedded.model_dump_json().encode())
    h.update(str(cfg.training.seed).encode())
    for x in sorted(ids.column(0).to_pylist()):
        h.update(x.encode())
    return h.hexdigest()


@asset(
    group_name="training",
    kinds={"python", "pytorch"},
    deps=[AssetKey("scrubbed_documents")],
    op_tags=TRAINING_TAGS,
    description="The base model: the embedded tiny LLaMA (BPE tokenizer and weights trained here on the "
    "scrubbed corpus), a local model directory, or a hub id (downloaded only when allowed).",
)
@reports_to_town("training", announce_success=False)
def base_model(
    context: AssetExecutionContext, settings: GastownSettings, progress_sink: ResourceParam[Any]
) -> MaterializeResult:
    from gastown_ft.training.base_model import build_embedded_model, model_fingerprint

    cfg = settings.load()
    store = settings.store()
    meta: dict = {}
    if cfg.training.base_model == "embedded":
        target = store.embedded_model_dir()
        key = _embedded_key(store, cfg)
        marker = target / "gastown_ft_build.json"
        built = json.loads(marker.read_text()) if marker.exists() else None
        if built and built.get("key") == key:
            context.log.info("embedded base model is up to date with the scrubbed corpus; reusing it")
            report = built["report"]
        else:
            context.log.info(
                "building the embedded base model: tokenizer and brief pretraining on the corpus"
            )
            rep = build_embedded_model(
                _scrubbed_texts(store),
                target,
                cfg.training.embedded,
                seed=cfg.training.seed,
                progress=_ProgressLog(context, "pretraining", progress_sink),
            )
            report = rep.to_dict()
            marker.write_text(json.dumps({"key": key, "report": report}, indent=2))
        meta.update(
            parameters=MetadataValue.int(report["parameters"]),
            pretrain_initial_loss=MetadataValue.float(report["initial_loss"]),
            pretrain_final_loss=MetadataValue.float(report["final_loss"]),
            pretrain_loss_curve=MetadataValue.json(report["loss_curve"]),
            pretrain_tokens_per_s=MetadataValue.float(round(report["tokens_per_s"], 1)),
        )
    try:
        resolved = resolve_configured_base(cfg, store)
    except GastownFTError as e:
        raise Failure(description=str(e)) from None
    fingerprint = model_fingerprint(resolved.path)
    context.log.info(f"base model {resolved.name} ({resolved.source}) at {resolved.path}, {fingerprint[:12]}")
    return MaterializeResult(
        metadata={
            **meta,
            "source": resolved.source,
            "name": resolved.name,
            "fingerprint": fingerprint,
            "path": MetadataValue.path(str(resolved.path)),
        }
    )


@asset(
    group_name="training",
    kinds={"python", "pytorch"},
    deps=[AssetKey("corpus_splits"), base_model],
    op_tags=TRAINING_TAGS,
    description="The LoRA adapter trained on the train split (loss on assistant tokens only), with "
    "checkpoints, loss curves, the memory estimate against the measured peak, and full provenance.",
)
@reports_to_town("training")
def lora_adapter(
    context: AssetExecutionContext, settings: GastownSettings, progress_sink: ResourceParam[Any]
) -> MaterializeResult:
    from gastown_ft.town.yielding import YieldGuard
    from gastown_ft.training.base_model import model_fingerprint
    from gastown_ft.training.lora import hardware_for, train_lora
    from gastown_ft.training.plots import plot_loss_curves

    cfg = settings.load()
    store = settings.store()
    try:
        plan, resolved, version = plan_for(cfg, store)
        context.log.info("training plan:\n" + plan.describe())
        plan.check_budget()
    except GastownFTError as e:
        raise Failure(description=str(e)) from None
    out_dir = store.training_run_dir(plan.fingerprint)
    swarm = None
    guard = None  # local training yields to the town (gastown_ft/town/yielding.py)
    if cfg.training.backend == "hivemind":
        # This run is the swarm's first peer; it logs the command the other machines join with.
        from gastown_ft.swarm.session import run_first_peer

        try:
            outcome = run_first_peer(
                cfg,
                plan,
                model_fingerprint(resolved.path),
                version,
                out_dir,
                context.run.run_id,
                log=context.log.info,
                progress=_ProgressLog(context, "lora (swarm)", progress_sink),
            )
        except GastownFTError as e:
            raise Failure(description=str(e)) from None
        result, swarm = outcome.train, outcome.swarm
    elif cfg.training.processes > 1:
        from gastown_ft.training.lora import TrainResult
        from gastown_ft.training.parallel import launch_data_parallel

        try:
            state = launch_data_parallel(
                cfg.config_path, out_dir, cfg.training.processes, log=context.log.info
            )
        except GastownFTError as e:
            raise Failure(description=str(e)) from None
        result = TrainResult.from_state(state, out_dir)
    else:
        guard = YieldGuard.for_training(
            cfg, (plan.hardware or hardware_for(cfg.training)).threads, context.log.info
        )
        result = guard.run(
            lambda should_stop: train_lora(
                plan,
                out_dir,
                resume=True,
                progress=_ProgressLog(context, "lora", progress_sink),
                should_stop=should_stop,
            )
        )
    if result.status != "completed":
        raise Failure(
            description=f"training {result.status} at step {result.steps_done}/{result.total_steps}; "
            f"checkpoint saved in {result.last_checkpoint}; rerun to resume"
        )
    train_curve = list(enumerate(result.train_loss, start=1))
    plot = plot_loss_curves(train_curve, result.val_loss, out_dir / "loss.png")
    provenance = {
        "corpus_version": version,
        "base_model": {
            "name": resolved.name,
            "source": resolved.source,
            "path": str(resolved.path),
            "fingerprint": model_fingerprint(resolved.path),
            "revision": resolved.revision,
        },
        "config": cfg.training.model_dump(mode="json"),
        "project": project_version(),
        "seed": cfg.training.seed,
        "run_id": context.run.run_id,
        "plan_fingerprint": plan.fingerprint,
        "backend": cfg.training.backend,
    }
    if swarm is not None:
        provenance["swarm"] = {
            "run_id": swarm.run_id,
            "peers_seen": swarm.peers_seen,
            "members": swarm.members,
        }
    (out_dir / "provenance.json").write_text(json.dumps(provenance, indent=2))
    final_val = result.val_loss[-1][1] if result.val_loss else None
    first_val = result.val_loss[0][1] if result.val_loss else None
    context.log.info(
        f"adapter saved to {result.adapter_dir}; validation loss {first_val} -> {final_val}; "
        f"peak RSS {result.peak_rss_bytes / 2**20:.0f} MB (estimated "
        f"{result.estimated_peak_bytes / 2**20:.0f} MB)"
    )
    return MaterializeResult(
        metadata={
            "status": result.status,
            "steps": MetadataValue.int(result.steps_done),
            "train_loss_final": MetadataValue.float(
                float(result.train_loss[-1]) if result.train_loss else 0.0
            ),
            "val_loss_first": MetadataValue.float(float(first_val) if first_val is not None else 0.0),
            "val_loss_final": MetadataValue.float(float(final_val) if final_val is not None else 0.0),
            "train_loss_curve": MetadataValue.json([[s, round(v, 5)] for s, v in train_curve]),
            "val_loss_curve": MetadataValue.json([[s, round(v, 5)] for s, v in result.val_loss]),
            "loss_plot_path": MetadataValue.path(str(plot)),
            "tokens_per_s": MetadataValue.float(round(result.tokens_per_s, 1)),
            "peak_rss_mb": MetadataValue.float(round(result.peak_rss_bytes / 2**20, 1)),
            "estimated_peak_mb": MetadataValue.float(round(result.estimated_peak_bytes / 2**20, 1)),
            "wall_seconds": MetadataValue.float(round(result.wall_seconds, 1)),
            "resumed_from_step": MetadataValue.int(result.resumed_from_step or 0),
            "corpus_version": MetadataValue.text(version),
            "provenance": MetadataValue.json(provenance),
            "path": MetadataValue.path(str(result.adapter_dir)),
            "plot": MetadataValue.md(f"![loss curves]({plot.as_uri()})"),
            **(_swarm_metadata(swarm) if swarm is not None else {}),
            **(guard.dagster_metadata() if guard is not None else {}),
        }
    )


def _swarm_metadata(swarm) -> dict:
    """What the swarm cost and who took part: bytes a round against the full model, round times."""
    d = swarm.to_dict()
    return {
        "swarm_run_id": MetadataValue.text(swarm.run_id),
        "swarm_peers_seen": MetadataValue.int(swarm.peers_seen),
        "swarm_members": MetadataValue.int(swarm.members),
        "swarm_rounds": MetadataValue.int(swarm.rounds),
        "swarm_averaged_rounds": MetadataValue.int(swarm.averaged_rounds),
        "swarm_largest_group": MetadataValue.int(swarm.largest_group),
        "swarm_mean_round_seconds": MetadataValue.float(round(d["mean_round_seconds"] or 0.0, 3)),
        "swarm_bytes_per_round": MetadataValue.int(swarm.grad_bytes_per_round),
        "swarm_sent_bytes_per_round": MetadataValue.int(d["sent_bytes_per_round"]),
        "swarm_full_model_bytes": MetadataValue.int(swarm.full_model_bytes),
        "swarm_samples_here": MetadataValue.int(swarm.samples),
        "swarm": MetadataValue.json(d),
    }


train_job = define_asset_job(
    "train", selection=AssetSelection.assets(base_model, lora_adapter), tags=TRAINING_TAGS
)
