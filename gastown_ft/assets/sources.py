"""Source assets (group `sources`) and the `quarantine` asset: thin adapters over corpus.stages.

Each `raw_<source>` asset runs one reader over the town and writes the documents
(artifacts/raw/<source>.parquet) and what was quarantined (artifacts/quarantine/<source>.parquet).
`quarantine` gathers every stage's quarantine table into one, with the reason for each input.

(No `from __future__ import annotations` in asset modules: Dagster inspects the `context` hint.)
"""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from gastown_ft.corpus.documents import SOURCES
from gastown_ft.corpus.stages import quarantine_stage, read_stage
from gastown_ft.resources import GastownSettings


def md_table(header: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")[:80]

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def _make_source_asset(source: str):
    @asset(
        name=f"raw_{source}",
        group_name="sources",
        kinds={"python", "parquet"},
        description=f"Every {source} document of the town, one row each, with provenance "
        f"(rig, path, git commit, mtime, role, content hash).",
    )
    def _source_asset(context: AssetExecutionContext, settings: GastownSettings) -> MaterializeResult:
        cfg = settings.load()
        if source not in cfg.town.sources:
            context.log.info(f"{source} is not in town.sources; writing an empty table")
        s = read_stage(cfg.town, settings.store(), source, reuse=cfg.corpus.reuse)
        if s["reused"]:
            context.log.info(f"{source}: no input file changed since the last read; kept its tables")
        context.log.info(
            f"{source}: {s['rows']} documents, {s['quarantined']} quarantined {s['quarantine_by_reason']}, "
            f"skipped {s['skipped']} in {s['seconds']:.1f}s"
        )
        return MaterializeResult(
            metadata={
                "enabled": s["enabled"],
                "row_count": MetadataValue.int(s["rows"]),
                "bytes": MetadataValue.int(int(s["bytes"])),
                "files_read": MetadataValue.int(s["files_read"]),
                "quarantine_count": MetadataValue.int(s["quarantined"]),
                "quarantine_by_reason": MetadataValue.json(s["quarantine_by_reason"]),
                "skipped": MetadataValue.json(s["skipped"]),
                "kinds": MetadataValue.json(s["kinds"]),
                "reused": s["reused"],
                "reused_documents": MetadataValue.int(s["reused_documents"]),
                "recomputed_documents": MetadataValue.int(s["recomputed_documents"]),
                "seconds": MetadataValue.float(round(s["seconds"], 3)),
                "path": MetadataValue.path(s["path"]),
                "quarantine_path": MetadataValue.path(s["quarantine_path"]),
                "preview": MetadataValue.md(
                    md_table(["title", "path", "rig", "role", "chars"], s["preview"])
                ),
            }
        )

    return _source_asset


source_assets = [_make_source_asset(s) for s in SOURCES]


@asset(
    group_name="corpus",
    kinds={"python", "parquet"},
    deps=[*(AssetKey(f"raw_{s}") for s in SOURCES), AssetKey("scrubbed_documents")],
    description="Every input that could not be read or cleaned, with its reason. Nothing is dropped silently.",
)
def quarantine(context: AssetExecutionContext, settings: GastownSettings) -> MaterializeResult:
    s = quarantine_stage(settings.load().town, settings.store())
    context.log.info(f"quarantine: {s['rows']} inputs; by reason {s['by_reason']}")
    return MaterializeResult(
        metadata={
            "row_count": MetadataValue.int(s["rows"]),
            "by_reason": MetadataValue.json(s["by_reason"]),
            "by_source": MetadataValue.json(s["by_source"]),
            "file_count": MetadataValue.int(s["files"]),
            # the most quarantined files with their line numbers (the CLI summary lists them)
            "by_file": MetadataValue.json(s["by_file"]),
            "path": MetadataValue.path(s["path"]),
            "preview": MetadataValue.md(md_table(["source", "path", "reason", "detail"], s["preview"])),
        }
    )
