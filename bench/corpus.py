"""Corpus benchmark: throughput of each stage and peak memory, on ../shared/gastown-samples and on
synthetic towns, plus the scrubber side by side with scrubadub's defaults on the same text.

    .venv/bin/python bench/corpus.py                      # samples, 10k and 100k documents
    .venv/bin/python bench/corpus.py --sizes 10000 --scrub-mb 2

Every stage runs in its own process, so each peak RSS is that stage's own. With more than one
synthetic size, the peak RSS of each stage is also shown side by side, with the ratio of the largest
town to the smallest, and the build's peak (the largest of its stages). Every stage streams (scrub,
pairs and splits read and write a batch at a time), so each ratio's target is at most FLAT_TARGET.
A script, not a test.
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

STAGES = ("read", "scrub", "pairs", "splits")
FLAT_TARGET = 1.5  # each stage: peak RSS of the largest town over that of the smallest


def peak_rss_mb() -> float:
    from gastown_ft.training.lora import peak_rss_bytes  # VmHWM: the child's own peak, not its parent's

    return peak_rss_bytes() / 2**20


def run_stage(stage: str, config: Path) -> dict:
    """Runs in a child process: one stage over the artifact store of `config`."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from gastown_ft.config import load_settings
    from gastown_ft.corpus import stages
    from gastown_ft.corpus.documents import SOURCES

    s = load_settings(config)
    store = stages.ArtifactStore(s.artifacts.dir)
    base_rss = peak_rss_mb()
    t = time.perf_counter()
    if stage == "read":
        per = [stages.read_stage(s.town, store, src) for src in SOURCES]
        out = {"docs": sum(p["rows"] for p in per), "bytes": sum(p["bytes"] for p in per)}
    elif stage == "scrub":
        st, _ = stages.scrub_stage(store, town_root=s.town.root)
        # Scanned bytes: text, title, path and the meta JSON (transcript blocks, bead events) alike.
        out = {"docs": st["rows"], "bytes": st["bytes_scanned"], "redactions": sum(st["by_kind"].values())}
    elif stage == "pairs":
        st, _, _ = stages.pairs_stage(store, s.corpus)
        out = {"docs": st["documents"], "examples": st["rows"]}
    else:
        st, _ = stages.splits_stage(store, s.corpus)
        out = {"docs": st["rows"], "examples": st["rows"]}
    # The stage's own figures, before anything below reads a table for the byte counts.
    out.update(seconds=time.perf_counter() - t, peak_rss_mb=peak_rss_mb(), import_rss_mb=base_rss)
    if stage == "pairs":
        docs = pq.read_table(store.path("corpus", "scrubbed_documents"), columns=["bytes"])
        out["bytes"] = pc.sum(docs["bytes"]).as_py() or 0
    elif stage == "splits":
        out["bytes"] = store.path("corpus", "instruction_pairs").stat().st_size
    return out


def bench_town(label: str, root: Path, projects: Path, work: Path) -> list[dict]:
    from gastown_ft.config import ArtifactsConfig, DagsterConfig, Settings, TownConfig, render_settings_toml

    cfg = work / f"{label}.toml"
    cfg.write_text(
        render_settings_toml(
            Settings(
                town=TownConfig(root=root, claude_projects_dir=projects),
                artifacts=ArtifactsConfig(dir=work / f"{label}-artifacts"),
                dagster=DagsterConfig(home=work / "dh"),
            )
        )
    )
    rows = []
    for stage in STAGES:
        out = subprocess.run(
            [sys.executable, __file__, "--stage", stage, "--config", str(cfg)],
            capture_output=True,
            text=True,
            check=True,
        )
        rec = json.loads(out.stdout.strip().splitlines()[-1])
        rec.update(town=label, stage=stage)
        rows.append(rec)
        print(
            f"  {label:>10} {stage:<6} {rec['docs']:>8} docs {rec['bytes'] / 1e6:8.2f} MB "
            f"{rec['seconds']:7.2f} s  peak RSS {rec['peak_rss_mb']:7.0f} MB",
            flush=True,
        )
    return rows


def rss_by_size(rows: list[dict]) -> dict[str, dict]:
    """Peak RSS (MB) and seconds of each stage on each synthetic town, and largest / smallest."""
    syn = [r for r in rows if r["town"].startswith("syn-")]
    sizes = sorted({int(r["town"].removeprefix("syn-")) for r in syn})
    out: dict[str, dict] = {}
    for stage in STAGES:
        by = {int(r["town"].removeprefix("syn-")): r for r in syn if r["stage"] == stage}
        if len(by) < 2:
            continue
        small, big = by[min(by)], by[max(by)]
        out[stage] = {
            "peak_rss_mb": {n: by[n]["peak_rss_mb"] for n in sizes if n in by},
            "seconds": {n: by[n]["seconds"] for n in sizes if n in by},
            "ratio": big["peak_rss_mb"] / small["peak_rss_mb"],
        }
    if out:  # the build: the stages run one after the other, so its peak is the largest of theirs
        peak = {n: max(v["peak_rss_mb"][n] for v in out.values()) for n in sizes}
        seconds = {n: sum(v["seconds"][n] for v in out.values()) for n in sizes}
        out["build"] = {"peak_rss_mb": peak, "seconds": seconds, "ratio": peak[max(sizes)] / peak[min(sizes)]}
    return out


def print_rss_by_size(table: dict[str, dict]) -> None:
    if not table:
        return
    sizes = sorted({n for v in table.values() for n in v["peak_rss_mb"]})
    print("\npeak RSS MB by town size (seconds in brackets), each stage in its own process:")
    print("  stage " + "".join(f"{f'{n} docs':>22}" for n in sizes) + f"  {max(sizes)}/{min(sizes)}")
    for stage, v in table.items():
        cells = "".join(
            f"{v['peak_rss_mb'][n]:>12.0f} ({v['seconds'][n]:6.1f}s)" if n in v["peak_rss_mb"] else " " * 22
            for n in sizes
        )
        note = "  within target" if v["ratio"] <= FLAT_TARGET else f"  OVER the {FLAT_TARGET}x target"
        print(f"  {stage:<6}{cells}  {v['ratio']:5.2f}x{note}")


def bench_scrub(text_docs: list[str], mb: float) -> dict:
    """Our Scrubber and scrubadub.clean on the same documents, in this process, one after the other."""
    import scrubadub

    from gastown_ft.corpus.scrub import Scrubber

    docs, total = [], 0
    for d in text_docs:
        if total >= mb * 1e6:
            break
        docs.append(d)
        total += len(d.encode())
    scrubber = Scrubber()
    t = time.perf_counter()
    for d in docs:
        scrubber.scrub(d)
    ours = time.perf_counter() - t
    t = time.perf_counter()
    for d in docs:
        scrubadub.clean(d)
    theirs = time.perf_counter() - t
    return {
        "mb": total / 1e6,
        "docs": len(docs),
        "ours_mb_s": total / 1e6 / ours,
        "scrubadub_mb_s": total / 1e6 / theirs,
        "ratio": theirs / ours,
    }


def labeled_cases_pass() -> tuple[int, int]:
    """Runs the labeled scrub suite (gastown_ft_tests/corpus/test_scrub.py) through pytest."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(REPO / "gastown_ft_tests/corpus/test_scrub.py"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    tail = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    passed = int(tail.split(" passed")[0].split()[-1]) if " passed" in tail else 0
    failed = int(tail.split(" failed")[0].split()[-1]) if " failed" in tail else 0
    return passed, failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=STAGES)
    ap.add_argument("--config", type=Path)
    ap.add_argument("--sizes", default="10000,100000", help="synthetic town sizes in documents")
    ap.add_argument("--scrub-mb", type=float, default=4.0, help="text for the scrubadub comparison")
    ap.add_argument("--json", type=Path, help="also write all figures here")
    args = ap.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.config)))
        return

    from gastown_ft.demo.synthetic import build_synthetic_town

    results: dict = {"stages": []}
    with tempfile.TemporaryDirectory(prefix="gtft-bench-") as tmp:
        work = Path(tmp)
        samples = REPO.parent / "shared" / "gastown-samples"
        print("stage throughput (each stage in its own process):")
        if samples.is_dir():
            results["stages"] += bench_town("samples", samples, work / "no-transcripts", work)
        else:
            print("  ../shared/gastown-samples absent: skipped")
        for n in [int(x) for x in args.sizes.split(",") if x]:
            t = time.perf_counter()
            syn = build_synthetic_town(work / f"syn{n}", n)
            print(
                f"  (synthetic town of {sum(syn.documents.values())} documents built in "
                f"{time.perf_counter() - t:.1f}s)"
            )
            results["stages"] += bench_town(f"syn-{n}", syn.root, syn.claude_projects_dir, work)

        import pyarrow.parquet as pq

        label = "samples" if samples.is_dir() else f"syn-{args.sizes.split(',')[0]}"
        texts = pq.read_table(work / f"{label}-artifacts" / "raw" / "beads.parquet", columns=["text"])["text"]
        texts = [t for t in texts.to_pylist()]
        for src in ("formulas", "conventions", "transcripts", "events"):
            p = work / f"{label}-artifacts" / "raw" / f"{src}.parquet"
            texts += pq.read_table(p, columns=["text"])["text"].to_pylist()
        import random

        random.Random(0).shuffle(texts)
        results["scrub"] = bench_scrub(texts, args.scrub_mb)
    s = results["scrub"]
    print(f"\nscrub, same {s['mb']:.1f} MB ({s['docs']} documents of {label}) in one process:")
    print(f"  gastown-ft Scrubber : {s['ours_mb_s']:8.2f} MB/s")
    print(f"  scrubadub.clean     : {s['scrubadub_mb_s']:8.2f} MB/s")
    print(f"  ratio               : {s['ratio']:8.1f}x")
    passed, failed = labeled_cases_pass()
    results["labeled_cases"] = {"passed": passed, "failed": failed}
    print(f"labeled scrub suite: {passed} passed, {failed} failed")
    print("\nstage          town        docs/s     MB/s   peak RSS MB")
    for r in results["stages"]:
        print(
            f"  {r['stage']:<6} {r['town']:>12} {r['docs'] / r['seconds']:10.0f} "
            f"{r['bytes'] / 1e6 / r['seconds']:8.2f} {r['peak_rss_mb']:10.0f}"
        )
    results["rss_by_size"] = rss_by_size(results["stages"])
    print_rss_by_size(results["rss_by_size"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
