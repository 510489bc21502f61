"""Release asset (group `release`): `exported_model`, the tuned model as a registered version.

Runs after `eval_report`, whose blocking check stops it when the tuned model is worse than the base.
Run on its own it refuses too, from the evaluation's results.json: no export without a passing eval.
"""

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
from dagster import AssetExecutionContext, AssetKey, Failure, MaterializeResult, MetadataValue, asset

from gastown_ft.artifacts import ArtifactStore
from gastown_ft.corpus.splits import SPLITS
from gastown_ft.errors import GastownFTError
from gastown_ft.instance import latest_metadata
from gastown_ft.resources import GastownSettings
from gastown_ft.town.hooks import reports_to_town
from gastown_ft.town.reporting import with_town_bead


def _latest_metadata(context: AssetExecutionContext, name: str) -> dict:
    meta = latest_metadata(context.instance, name)
    if meta is None:
        raise Failure(description=f"{name} has not been materialized: nothing to export")
    return meta


def _corpus_summary(store: ArtifactStore, version: str | None) -> dict:
    splits, tasks = {}, {}
    for split in SPLITS:
        path = store.split_path(split)
        if path.exists():
            col = pq.read_table(path, columns=["task"]).column(0).to_pylist()
            splits[split] = len(col)
            for t in col:
                tasks[t] = tasks.get(t, 0) + 1
    return {"version": version, "splits": splits, "tasks": dict(sorted(tasks.items(), key=lambda kv: -kv[1]))}


def _test_examples(store: ArtifactStore) -> list[dict]:
    """The test split's rows: the card's held-out loss per GGUF quantization is scored on a few."""
    path = store.split_path("test")
    return pq.read_table(path).to_pylist() if path.exists() else []


@asset(
    group_name="release",
    kinds={"python", "safetensors", "gguf"},
    deps=[AssetKey("eval_report")],
    description="The tuned model released: merged safetensors (Hugging Face layout, tokenizer, chat "
    "template, stop tokens), a GGUF for llama.cpp, an Ollama Modelfile and a model card, registered as "
    "the next version; promoted (what `gastown-ft serve` uses) when its evaluation passed.",
)
@reports_to_town("export")
def exported_model(context: AssetExecutionContext, settings: GastownSettings) -> MaterializeResult:
    from gastown_ft.evaluation.report import load_eval_results
    from gastown_ft.export.bundle import build_release_bundle
    from gastown_ft.export.registry import Registry, registry_root

    cfg = settings.load()
    store = settings.store()
    ev_meta = _latest_metadata(context, "eval_report")
    try:
        results = load_eval_results(ev_meta["results_path"])
        if not results.get("passed"):
            raise GastownFTError(
                f"the evaluation did not pass ({(results.get('decision') or {}).get('summary')}): "
                "nothing is exported",
                hint=f"see {results.get('report_path')}",
            )
        adapter = Path(ev_meta["adapter_path"])
        base = Path(ev_meta["base_model_path"])
        provenance = json.loads((adapter.parent / "provenance.json").read_text())
        staging = store.release_staging_dir(context.run.run_id)
        shutil.rmtree(staging, ignore_errors=True)
        bundle = build_release_bundle(
            staging,
            base_dir=base,
            adapter_dir=adapter,
            provenance=provenance,
            eval_results=results,
            corpus=_corpus_summary(store, provenance.get("corpus_version")),
            settings=cfg,
            log=context.log.info,
            heldout_examples=_test_examples(store),
        )
        registry = Registry(registry_root(cfg))
        version = registry.register(staging, with_town_bead(bundle.manifest, adapter), move=True)
        promoted = False
        if cfg.export.auto_promote:
            registry.promote(version)
            promoted = True
        pruned = registry.prune(cfg.export.keep_versions)
    except (GastownFTError, OSError) as e:
        raise Failure(description=str(e)) from None
    finally:
        shutil.rmtree(store.release_staging_dir(context.run.run_id), ignore_errors=True)
    mv = registry.get(version)
    context.log.info(
        f"registered {version} at {mv.path}" + ("; promoted: `gastown-ft serve` uses it" if promoted else "")
    )
    gguf = bundle.gguf or {}
    base = bundle.manifest.get("base_model") or {}
    meta = {
        "version": MetadataValue.text(version),
        "base_model": MetadataValue.text(str(base.get("name"))),
        "base_model_source": MetadataValue.text(str(base.get("source"))),
        "promoted": MetadataValue.bool(promoted),
        "registry": MetadataValue.path(str(registry.root)),
        "path": MetadataValue.path(str(mv.path)),
        "merged_path": MetadataValue.path(str(mv.bundle_dir / "merged")),
        "parameters": MetadataValue.int(bundle.merge["parameters"]),
        "merge_seconds": MetadataValue.float(round(bundle.merge["seconds"], 2)),
        "pruned_versions": MetadataValue.json(pruned),
        "card": MetadataValue.md((mv.bundle_dir / "README.md").read_text(encoding="utf-8")),
    }
    if gguf:
        meta.update(
            gguf_path=MetadataValue.path(str(mv.bundle_dir / "model.gguf")),
            gguf_mb=MetadataValue.float(round(gguf["bytes"] / 2**20, 2)),
            gguf_dtype=MetadataValue.text(gguf["dtype"]),
            modelfile_path=MetadataValue.path(str(mv.bundle_dir / "Modelfile")),
        )
        for q in bundle.manifest.get("gguf_quantizations") or []:
            if q.get("loss") is not None:
                meta[f"gguf_{q['quant']}_heldout_loss"] = MetadataValue.float(q["loss"])
    if mv.base_notice:  # the tiny embedded base: say so wherever this version shows up
        context.log.warning(f"{version}: {mv.base_notice}")
        meta["base_notice"] = MetadataValue.text(mv.base_notice)
    return MaterializeResult(metadata=meta)


release_assets: list = [exported_model]
