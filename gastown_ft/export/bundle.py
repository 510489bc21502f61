"""One release: the merged model, its GGUF and Modelfile, and the model card, in one directory.

The registry takes the directory as the next version (gastown_ft/export/registry.py); this module only
builds it. Each piece is its own module (merge, gguf, ollama, card); here they are put in order and the
inputs each needs are gathered from the training run's provenance and the evaluation results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gastown_ft.config import Settings

GGUF_NAME = "model.gguf"


@dataclass
class ReleaseBundle:
    path: Path
    manifest: dict[str, Any]
    merge: dict[str, Any]
    gguf: dict[str, Any] | None = None
    files: dict[str, Path] = field(default_factory=dict)


def card_eval_results(results: dict[str, Any]) -> dict[str, Any]:
    """What the model card shows of an evaluation's results.json."""
    decision = results.get("decision") or {}
    return {
        "metrics": results.get("metrics") or {},
        "split": "test",
        "examples": results.get("test_examples"),
        "passed": results.get("passed"),
        "gate": decision.get("summary"),
    }


def build_release_bundle(
    out_dir: Path,
    *,
    base_dir: Path,
    adapter_dir: Path,
    provenance: dict[str, Any],
    eval_results: dict[str, Any],
    corpus: dict[str, Any],
    settings: Settings,
    log=lambda _msg: None,
    heldout_examples: Sequence[dict[str, Any]] | None = None,
) -> ReleaseBundle:
    """Merge, convert and describe one trained adapter into `out_dir` (replaced if it exists).

    `heldout_examples` (test-split rows) score each GGUF file, so the card can say what each
    quantization costs."""
    from gastown_ft.export.card import write_model_card
    from gastown_ft.export.gguf import write_gguf
    from gastown_ft.export.merge import merge_adapter
    from gastown_ft.export.ollama import context_length, write_modelfile

    cfg = settings.export
    out_dir.mkdir(parents=True, exist_ok=True)
    base = provenance.get("base_model") or {}
    base_record = {k: base.get(k) for k in ("name", "source", "fingerprint", "revision")}
    merged = merge_adapter(
        base_dir,
        adapter_dir,
        out_dir / "merged",
        dtype=cfg.merged_dtype,
        extra={
            "corpus_version": provenance.get("corpus_version"),
            "plan_fingerprint": provenance.get("plan_fingerprint"),
            # What the model was tuned from, beside the weights: `serve --model DIR` reads it to say
            # when the base is the tiny embedded model (not a real language model).
            "base_model": base_record,
        },
    )
    log(
        f"export: merged {merged.parameters:,} parameters ({merged.changed_tensors} tensors changed) in {merged.seconds:.1f}s"
    )
    files = {"merged": merged.path}
    gguf = None
    quantizations: list[dict[str, Any]] = []
    if cfg.gguf:
        g = write_gguf(merged.path, out_dir / GGUF_NAME, cfg.gguf_dtype, name=cfg.ollama_name)
        gguf = g.to_dict()
        files["gguf"] = g.path
        files["modelfile"] = write_modelfile(out_dir, GGUF_NAME, num_ctx=context_length(merged.path))
        log(f"export: GGUF {g.dtype} {g.bytes / 2**20:.1f} MiB, {g.tensors} tensors, in {g.seconds:.1f}s")
        quantizations = _quantize(g, cfg.gguf_quantize, merged.path, heldout_examples, log)
    files["card"] = write_model_card(
        out_dir,
        base_model=base,
        corpus=corpus,
        training_config=provenance.get("config"),
        eval_results=card_eval_results(eval_results),
        provenance={
            k: provenance.get(k) for k in ("run_id", "plan_fingerprint", "project", "seed", "backend")
        },
        model_name=cfg.ollama_name,
        gguf_file=GGUF_NAME if gguf else None,
        modelfile="Modelfile" if gguf else None,
        serve_url=f"http://{settings.serve.host}:{settings.serve.port}/v1",
        quantizations=quantizations,
    )
    manifest = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "corpus_version": provenance.get("corpus_version"),
        "base_model": base_record,
        "plan_fingerprint": provenance.get("plan_fingerprint"),
        "training_run_id": provenance.get("run_id"),
        "eval": {
            "passed": bool(eval_results.get("passed")),
            "metrics": eval_results.get("metrics") or {},
            "summary": (eval_results.get("decision") or {}).get("summary"),
        },
        "merge": merged.to_dict(),
        "gguf": gguf,
        "gguf_quantizations": quantizations,
    }
    return ReleaseBundle(path=out_dir, manifest=manifest, merge=merged.to_dict(), gguf=gguf, files=files)


def _quantize(
    gguf, quants: Sequence[str], merged_dir: Path, examples: Sequence[dict[str, Any]] | None, log
) -> list[dict[str, Any]]:
    """Quantized copies of the GGUF beside it, and every file's held-out loss (the card's table)."""
    from gastown_ft.export.quantize import quantize_gguf
    from gastown_ft.llamacpp.runtime import unavailable

    if not quants:
        return []
    reason = unavailable()
    if reason:
        log(f"export: no quantized GGUF copies ({reason})")
        return []
    files = [{"quant": gguf.dtype, "file": gguf.path.name, "path": gguf.path, "bytes": gguf.bytes}]
    for q in quants:
        r = quantize_gguf(gguf.path, q)
        files.append({"quant": q, "file": r.path.name, "path": r.path, "bytes": r.bytes})
        log(f"export: GGUF {q} {r.bytes / 2**20:.1f} MiB in {r.seconds:.1f}s")
    sequences = []
    if examples:
        from transformers import AutoTokenizer

        from gastown_ft.llamacpp.quality import heldout_sequences

        sequences = heldout_sequences(examples, AutoTokenizer.from_pretrained(str(merged_dir)))
    rows = []
    for f in files:
        from gastown_ft.llamacpp.quality import gguf_heldout_loss

        score = gguf_heldout_loss(f["path"], sequences) if sequences else {}
        rows.append({k: v for k, v in f.items() if k != "path"} | score)
        if score.get("loss") is not None:
            log(f"export: {f['file']} held-out loss {score['loss']:.4f} on {score['tokens']} tokens")
    return rows
