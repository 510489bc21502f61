"""Incremental corpus build benchmark: a full build against a rebuild after one formula edit.

    .venv/bin/python bench/incremental.py                    # a synthetic town of 10,000 documents
    .venv/bin/python bench/incremental.py --documents 20000 --json out.json

Builds a synthetic town, runs the corpus stages (read -> scrub -> pairs -> splits, the functions the
Dagster assets call; no training) into a fresh artifacts dir, edits one formula file, and runs them
again in the same dir, reusing what is unchanged (three times, one more formula each time; the table
shows the median rebuild). Then a clean build of the edited town in a fresh
dir (reuse off) checks that the rebuild's outputs are the same, table for table. Each build runs in
its own process, with the heavy imports (Great Expectations, datasets) done before the clock starts,
so the figures are the stages' own work. A script, not a test.
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
GOAL = 0.10  # the rebuild after one edit costs at most this share of the full build


def run_build(config: Path, reuse: bool) -> dict:
    """Runs in a child process: every corpus stage once; wall seconds per stage and what was reused."""
    import datasets  # noqa: F401  (imported before the clock: a fixed cost of any process)
    import great_expectations  # noqa: F401

    from gastown_ft.config import load_settings
    from gastown_ft.corpus import stages
    from gastown_ft.corpus.documents import SOURCES

    s = load_settings(config)
    corpus = s.corpus.model_copy(update={"reuse": reuse})
    store = stages.ArtifactStore(s.artifacts.dir)
    out: dict = {"seconds": {}}
    t = time.perf_counter()
    reads = [stages.read_stage(s.town, store, src, reuse=reuse) for src in SOURCES]
    out["seconds"]["read"] = time.perf_counter() - t
    out["sources_reread"] = [src for src, r in zip(SOURCES, reads, strict=True) if not r["reused"]]
    out["documents"] = sum(r["rows"] for r in reads)
    t = time.perf_counter()
    scrub, _ = stages.scrub_stage(store, reuse=reuse, town_root=s.town.root)
    out["seconds"]["scrub"] = time.perf_counter() - t
    out["scrubbed_now"] = scrub["recomputed_documents"]
    t = time.perf_counter()
    pairs, outcomes, _ = stages.pairs_stage(store, corpus)
    out["seconds"]["pairs"] = time.perf_counter() - t
    out["pairs_reuse"] = pairs["reuse"]
    out["examples"] = pairs["rows"]
    out["validated_examples"] = pairs["validated_examples"]
    t = time.perf_counter()
    splits, split_outcomes = stages.splits_stage(store, corpus)
    out["seconds"]["splits"] = time.perf_counter() - t
    out["checks_passed"] = all(o.passed for o in [*outcomes, *split_outcomes])
    out["change"] = {k: splits[k] for k in ("examples_added", "examples_removed", "corpus_change_fraction")}
    stages.quarantine_stage(s.town, store)  # an output too (not timed: it is not a corpus stage)
    return out


def build_in_child(config: Path, reuse: bool) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--build", str(config), *([] if reuse else ["--no-reuse"])],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"build failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_config(work: Path, root: Path, projects: Path, artifacts: Path, name: str) -> Path:
    from gastown_ft.config import ArtifactsConfig, DagsterConfig, Settings, TownConfig, render_settings_toml

    path = work / f"{name}.toml"
    settings = Settings(
        town=TownConfig(root=root, claude_projects_dir=projects),
        artifacts=ArtifactsConfig(dir=artifacts),
        dagster=DagsterConfig(home=work / "dagster"),
    )
    path.write_text(render_settings_toml(settings))
    return path


def table(full: dict, rebuild: dict, clean: dict) -> str:
    lines = [
        "| stage | full build (s) | rebuild after one formula edit (s, median) | rebuild / full | clean build of the edited town (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for stage in (*STAGES, "total"):
        f, r, c = (
            sum(x["seconds"].values()) if stage == "total" else x["seconds"][stage]
            for x in (full, rebuild, clean)
        )
        name = f"**{stage}**" if stage == "total" else stage
        lines.append(f"| {name} | {f:.2f} | {r:.2f} | {r / f:.1%} | {c:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--documents", type=int, default=10_000, help="size of the synthetic town (>= 10000)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--edits", type=int, default=3, help="rebuilds, each after one more formula edit")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--no-reuse", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build:
        print(json.dumps(run_build(args.build, reuse=not args.no_reuse)))
        return

    from gastown_ft.corpus.reuse import output_differences
    from gastown_ft.corpus.town_edits import edit_formula, formula_files
    from gastown_ft.demo.synthetic import build_synthetic_town

    with tempfile.TemporaryDirectory(prefix="gtft-incremental-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        syn = build_synthetic_town(work / "town", args.documents, seed=args.seed)
        print(
            f"synthetic town: {sum(syn.documents.values())} documents {syn.documents} "
            f"({time.perf_counter() - t:.1f}s)",
            flush=True,
        )
        inc = write_config(work, syn.root, syn.claude_projects_dir, work / "artifacts", "incremental")
        ref = write_config(work, syn.root, syn.claude_projects_dir, work / "clean-artifacts", "clean")

        full = build_in_child(inc, reuse=True)
        print(f"full build: {sum(full['seconds'].values()):.1f}s {full['seconds']}", flush=True)
        # Several rebuilds, each after editing another formula: the machine's load varies, so the
        # table shows the median one (all totals are printed).
        rebuilds = []
        for n, edited in enumerate(
            [p for p in formula_files(syn.root) if p.name.startswith("syn-")][: args.edits]
        ):
            edit_formula(edited, f"Edited for the incremental benchmark ({n}): check the convoy first.")
            rebuilds.append(build_in_child(inc, reuse=True))
            print(
                f"rebuild after editing {edited.name}: {sum(rebuilds[-1]['seconds'].values()):.2f}s "
                f"{rebuilds[-1]['seconds']}",
                flush=True,
            )
        rebuild = sorted(rebuilds, key=lambda r: sum(r["seconds"].values()))[len(rebuilds) // 2]
        clean = build_in_child(ref, reuse=False)
        print(f"clean build of the edited town: {sum(clean['seconds'].values()):.1f}s", flush=True)
        diffs = output_differences(work / "artifacts", work / "clean-artifacts")

    ratio = sum(rebuild["seconds"].values()) / sum(full["seconds"].values())
    print()
    print(table(full, rebuild, clean))
    print()
    totals = ", ".join(f"{sum(r['seconds'].values()):.2f}" for r in rebuilds)
    print(f"- town: {full['documents']} documents, {full['examples']} examples")
    print(f"- rebuild totals (s), one per formula edit: {totals}; the table shows the median")
    print(
        f"- rebuild re-read sources {rebuild['sources_reread']}, scrubbed {rebuild['scrubbed_now']} documents, "
        f"pairs reuse {rebuild['pairs_reuse']}, validated {rebuild['validated_examples']} examples"
    )
    print(f"- change reported on corpus_splits: {rebuild['change']}")
    print(f"- rebuild outputs equal the clean build's: {'yes' if not diffs else 'NO: ' + '; '.join(diffs)}")
    print(f"- checks passed: full {full['checks_passed']}, rebuild {rebuild['checks_passed']}")
    print(
        f"- rebuild / full build: {ratio:.1%} (goal <= {GOAL:.0%}): {'met' if ratio <= GOAL else 'NOT met'}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"full": full, "rebuild": rebuild, "clean": clean, "ratio": ratio, "diffs": diffs}, indent=2
            )
        )
    if diffs:
        sys.exit(1)


if __name__ == "__main__":
    main()
