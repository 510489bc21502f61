"""Scrubber benchmark: our Scrubber against scrubadub.clean (defaults), side by side on the same text.

    .venv/bin/python bench/corpus_scrub.py              # ~10 MB synthetic + ../shared/gastown-samples
    .venv/bin/python bench/corpus_scrub.py --mb 20 --seed 7

Reports MB/s (UTF-8 bytes) and docs/s for both, the ratio, how many planted secrets each removed,
peak RSS (getrusage) after each phase, the traced peak of a streaming pass, scrub_jsonl throughput,
and whether every labeled case of gastown_ft_tests/corpus/test_scrub.py passes. A script, not a test.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import string
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gastown_ft.corpus.scrub import Scrubber, scrub_jsonl  # noqa: E402
from gastown_ft_tests.corpus import test_scrub as labeled  # noqa: E402

SAMPLES = REPO.parent / "shared" / "gastown-samples"
TEXT_SUFFIXES = (".md", ".toml", ".jsonl", ".json", ".yaml", ".yml", ".tmpl", ".txt")

WORDS = (
    "importer retry webhook ledger courier backoff jitter queue merge rebase refinery witness polecat convoy "
    "hook patrol escalate flaky test fixture timeout parser currency payee statement export schema migration "
    "index cache lock deadlock race dolt bead formula molecule wisp handoff mail key token pass secret auth "
    "review the and to of in for with on is that this it when then after before by from as be are"
).split()
RIGS = ["gastown", "beads", "ledger", "courier"]
POLECATS = ["nux", "furiosa", "dementus", "slit", "toast", "capable"]
FIRST = ["mara", "tobias", "ines", "kwame", "lena", "rafael", "yuki", "dmitri", "aoife", "sanjay"]
DOMAINS = ["quillmesh.io", "harborlight.dev", "fernwood-analytics.com", "tallgrass-labs.co"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Synth:
    """Gas Town-like documents; about one in `every` carries a planted secret or piece of PII."""

    def __init__(self, seed: int, every: int = 8) -> None:
        self.r = random.Random(seed)
        self.every = every

    def words(self, n: int) -> str:
        return " ".join(self.r.choice(WORDS) for _ in range(n))

    def bead_id(self) -> str:
        prefix = self.r.choice(["gt", "bd", "hq", "lg"])
        return f"{prefix}-{''.join(self.r.choice(string.ascii_lowercase + string.digits) for _ in range(4))}"

    def ts(self) -> str:
        return f"2026-0{self.r.randrange(1, 10)}-{self.r.randrange(10, 29)}T{self.r.randrange(10, 24)}:{self.r.randrange(10, 60)}:{self.r.randrange(10, 60)}Z"

    def sha(self, n: int = 40) -> str:
        return "".join(self.r.choice("0123456789abcdef") for _ in range(n))

    def agent(self) -> str:
        return f"{self.r.choice(RIGS)}/polecats/{self.r.choice(POLECATS)}"

    def planted(self) -> tuple[str, str]:
        """(text fragment, the value that must vanish)."""
        r = self.r
        who = r.choice(FIRST)
        choice = r.randrange(14)
        if choice == 0:
            v = labeled.ghp()
            return f"GITHUB_TOKEN={v}", v
        if choice == 1:
            v = labeled.akia()
            return f"aws_access_key_id = {v}", v
        if choice == 2:
            v = labeled.hf()
            return f'HF_TOKEN="{v}"', v
        if choice == 3:
            v = labeled.anthropic()
            return f"export ANTHROPIC_API_KEY={v}", v
        if choice == 4:
            v = f"{who}.{r.choice(['okafor', 'moreau', 'volkov'])}@{r.choice(DOMAINS)}"
            return f"owner {v}", v
        if choice == 5:
            v = f"({r.choice(['415', '312', '646'])}) 555-01{r.randrange(10, 99)}"
            return f"call {v}", v
        if choice == 6:
            return f"cwd /home/{who}x/gt/{r.choice(RIGS)}", f"/home/{who}x/"
        if choice == 7:
            v = f"{r.choice([34, 52, 104])}.{r.randrange(1, 255)}.{r.randrange(1, 255)}.{r.randrange(1, 255)}"
            return f"dial tcp {v}:443: timeout", v
        if choice == 8:
            v = labeled.password()
            return f"DB_PASSWORD={v}", v
        if choice == 9:
            v = labeled.password()
            return f"postgres://svc:{v}@db.{r.choice(DOMAINS)}:5432/app", v
        if choice == 10:
            v = labeled.jwt()
            return f"Authorization: Bearer {v}", v
        if choice == 11:
            v = labeled.pem_key()
            return f"key:\n{v}\n", v.splitlines()[2]
        if choice == 12:
            v = labeled.generic()
            return f'"client_secret": "{v}"', v
        v = labeled.slack_bot()
        return f"slack_token = '{v}'", v

    def doc(self) -> tuple[str, list[str]]:
        r = self.r
        plant = []
        extra = ""
        if r.randrange(self.every) == 0:
            frag, value = self.planted()
            extra, plant = frag, [value]
        kind = r.randrange(6)
        if kind == 0:  # bead export line
            obj = {
                "id": self.bead_id(),
                "title": self.words(6),
                "description": self.words(r.randrange(20, 120)) + (" " + extra if extra else ""),
                "status": r.choice(["open", "closed", "hooked", "in_progress"]),
                "priority": r.randrange(5),
                "created_by": self.agent(),
                "created_at": self.ts(),
                "content_hash": self.sha(64),
                "labels": [self.words(1) for _ in range(r.randrange(3))],
            }
            return json.dumps(obj), plant
        if kind == 1:  # transcript line with a tool_result
            content = "\n".join(
                f"{self.sha(7)} {self.words(8)} ({self.bead_id()}) {self.ts()}"
                for _ in range(r.randrange(3, 30))
            )
            obj = {
                "type": "user",
                "uuid": str(uuid.UUID(int=r.getrandbits(128))),
                "sessionId": str(uuid.UUID(int=r.getrandbits(128))),
                "timestamp": self.ts(),
                "cwd": f"~/gt/{r.choice(RIGS)}/polecats/{r.choice(POLECATS)}",
                "message": {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_01" + self.sha(22),
                            "content": content + "\n" + extra,
                        }
                    ],
                },
                "usage": {"input_tokens": r.randrange(10**5), "output_tokens": r.randrange(10**4)},
            }
            return json.dumps(obj), plant
        if kind == 2:  # CLAUDE.md-ish
            parts = [f"# {self.words(3).title()}", ""]
            for _ in range(r.randrange(5, 25)):
                parts.append(f"- {self.words(r.randrange(6, 20))} (`bd show {self.bead_id()}`)")
                if r.random() < 0.3:
                    parts.append(
                        f"  ```\n  gt sling {self.bead_id()} {r.choice(RIGS)}\n  bd close {self.bead_id()}\n  ```"
                    )
            parts.append(extra)
            return "\n".join(parts), plant
        if kind == 3:  # formula TOML
            steps = "\n".join(
                f'[[steps]]\nid = "{self.words(1)}-{i}"\ntitle = "{self.words(5)}"\n'
                f'description = """\n{self.words(r.randrange(15, 60))}\n"""\nneeds = ["step-{i - 1}"]\n'
                for i in range(r.randrange(3, 10))
            )
            return (
                f'formula = "mol-{self.words(1)}-patrol"\nversion = 3\n[vars.rig]\ndefault = "gastown"\n{steps}\n{extra}',
                plant,
            )
        if kind == 4:  # env / shell output
            lines = [
                "GT_ROLE=polecat",
                f"GT_RIG={r.choice(RIGS)}",
                f"BD_ACTOR={self.agent()}",
                "PATH=/usr/local/bin:/usr/bin:/bin",
                f"GIT_COMMIT={self.sha()}",
                "DOLT_PORT=3307",
                "EDITOR=vim",
                f"MAX_TOKENS={r.randrange(1000, 200000)}",
            ]
            r.shuffle(lines)
            return "\n".join(lines + [extra]), plant
        # event feed lines
        evs = [
            json.dumps(
                {
                    "ts": self.ts(),
                    "source": "gt",
                    "type": r.choice(["sling", "hook", "done", "mail", "nudge", "handoff"]),
                    "actor": self.agent(),
                    "payload": {"bead": self.bead_id(), "note": self.words(r.randrange(3, 12))},
                }
            )
            for _ in range(r.randrange(2, 12))
        ]
        return "\n".join(evs + ([json.dumps({"note": extra})] if extra else [])), plant

    def corpus(self, target_mb: float) -> tuple[list[str], list[list[str]]]:
        docs, plants, size = [], [], 0
        while size < target_mb * 1e6:
            d, p = self.doc()
            docs.append(d)
            plants.append(p)
            size += len(d.encode("utf-8"))
        return docs, plants


def sample_docs() -> list[str]:
    if not SAMPLES.is_dir():
        return []
    docs = []
    for path in sorted(SAMPLES.rglob("*")):
        if not path.is_file() or not path.name.endswith(TEXT_SUFFIXES):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".jsonl":
            docs += [line for line in text.splitlines() if line.strip()]
        else:
            docs.append(text)
    return docs


def run(fn, docs: list[str]) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = [fn(d) for d in docs]
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=10.0, help="size of the synthetic corpus (MB)")
    ap.add_argument("--seed", type=int, default=20261130)
    ap.add_argument("--no-scrubadub", action="store_true", help="skip the scrubadub side")
    args = ap.parse_args()

    rss = {"start": peak_rss_mb()}
    synth, planted = Synth(args.seed).corpus(args.mb)
    corpora = [("synthetic", synth, planted)]
    samples = sample_docs()
    if samples:
        corpora.append(("gastown-samples", samples, None))
    rss["corpora built"] = peak_rss_mb()

    # Labeled cases.
    t0 = time.perf_counter()
    sc = Scrubber()
    problems = [p for case in labeled.CASES for p in labeled.check_case(sc, *case)]
    labeled_s = time.perf_counter() - t0

    rows = []
    ours_out = {}
    for name, docs, _plants in corpora:
        mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
        dt, out = run(sc.scrub, docs)
        ours_out[name] = out
        rows.append({"corpus": name, "docs": len(docs), "mb": mb, "ours_s": dt})
    rss["after ours"] = peak_rss_mb()

    # Streaming pass under tracemalloc: memory stays at the scale of one document.
    tracemalloc.start()
    for d in synth:
        sc.scrub(d)
    traced_peak_kb = tracemalloc.get_traced_memory()[1] / 1024
    tracemalloc.stop()
    largest_kb = max(len(d.encode("utf-8")) for d in synth) / 1024

    # scrub_jsonl on the synthetic corpus written as JSONL.
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        with open(src, "w", encoding="utf-8") as f:
            for i, d in enumerate(synth):
                f.write(json.dumps({"id": i, "source": "synthetic", "text": d}) + "\n")
        jsonl_mb = src.stat().st_size / 1e6
        t0 = time.perf_counter()
        jsonl_counts = scrub_jsonl(src, dst, scrubber=sc)
        jsonl_s = time.perf_counter() - t0
    rss["after scrub_jsonl"] = peak_rss_mb()

    scrubadub_out = {}
    if not args.no_scrubadub:
        t0 = time.perf_counter()
        import scrubadub

        import_s = time.perf_counter() - t0
        for row, (name, docs, _plants) in zip(rows, corpora, strict=True):
            dt, out = run(scrubadub.clean, docs)
            row["scrubadub_s"] = dt
            scrubadub_out[name] = out
        rss["after scrubadub"] = peak_rss_mb()

    # Planted-secret recall on the synthetic corpus.
    plants = corpora[0][2]
    n_planted = sum(len(p) for p in plants)
    ours_removed = sum(v not in r.text for r, p in zip(ours_out["synthetic"], plants, strict=True) for v in p)
    ours_unsafe = sum(1 for r in ours_out["synthetic"] if r.unsafe)
    theirs_removed = None
    if scrubadub_out:
        theirs_removed = sum(
            v not in t for t, p in zip(scrubadub_out["synthetic"], plants, strict=True) for v in p
        )
    findings = sum((r.counts for r in ours_out["synthetic"]), start=type(ours_out["synthetic"][0].counts)())

    # Report.
    print(f"\nScrubber vs scrubadub.clean (defaults), same documents   [python {sys.version.split()[0]}]\n")
    hdr = f"{'corpus':<16}{'docs':>8}{'MB':>7} | {'ours MB/s':>9}{'docs/s':>9} | {'scrubadub MB/s':>14}{'docs/s':>8} | {'ratio':>6}"
    print(hdr)
    print("-" * len(hdr))
    for row in rows:
        ours_mbs, ours_dps = row["mb"] / row["ours_s"], row["docs"] / row["ours_s"]
        line = f"{row['corpus']:<16}{row['docs']:>8}{row['mb']:>7.2f} | {ours_mbs:>9.1f}{ours_dps:>9.0f} | "
        if "scrubadub_s" in row:
            t_mbs, t_dps = row["mb"] / row["scrubadub_s"], row["docs"] / row["scrubadub_s"]
            line += f"{t_mbs:>14.2f}{t_dps:>8.0f} | {ours_mbs / t_mbs:>5.1f}x"
        else:
            line += f"{'-':>14}{'-':>8} | {'-':>6}"
        print(line)
    print()
    print(f"planted secrets/PII in synthetic: {n_planted}; removed by ours: {ours_removed}", end="")
    print(f"; by scrubadub: {theirs_removed}" if theirs_removed is not None else "")
    print(f"ours, synthetic findings: {dict(findings.most_common())}; unsafe docs: {ours_unsafe}")
    print(
        f"scrub_jsonl: {jsonl_mb:.2f} MB in {jsonl_s:.2f} s = {jsonl_mb / jsonl_s:.1f} MB/s; "
        f"docs={jsonl_counts['docs']} bad_line={jsonl_counts['bad_line']} unsafe={jsonl_counts['unsafe']}"
    )
    if scrubadub_out:
        print(f"scrubadub import: {import_s:.2f} s (not included above)")
    print(
        f"streaming pass, tracemalloc peak: {traced_peak_kb:.0f} KiB (largest document {largest_kb:.0f} KiB; "
        f"corpus {rows[0]['mb']:.1f} MB)"
    )
    print("peak RSS (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))
    total = len(labeled.CASES)
    print(
        f"labeled cases: {total - len({p.split(':')[0] for p in problems})}/{total} pass ({labeled_s * 1000:.0f} ms)"
    )
    for p in problems:
        print("  FAIL", p)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
