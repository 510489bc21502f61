"""A synthetic town of any size, for benchmarks: the demo town, scaled up.

The demo town's files are the templates; copies get fresh ids, names and a shuffle of words from
a vocabulary, so that they are distinct documents (not exact duplicates) that exercise every reader,
the scrubber and the pair builders the way a large real town would. Deterministic from the seed.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from gastown_ft.demo.town import DemoTown, build_demo_town

# Share of documents per source in a large town: beads dominate, as in real towns.
MIX = {"beads": 0.84, "events": 0.06, "formulas": 0.05, "transcripts": 0.03, "conventions": 0.02}
WORDS = (
    "importer retry webhook ledger courier backoff jitter queue merge rebase refinery witness polecat "
    "convoy hook patrol escalate flaky test fixture timeout parser currency payee statement export "
    "schema migration index cache lock deadlock race dolt bead formula molecule wisp handoff mail"
).split()


@dataclass
class SyntheticTown:
    town: DemoTown
    documents: dict[str, int]

    @property
    def root(self) -> Path:
        return self.town.root

    @property
    def claude_projects_dir(self) -> Path:
        return self.town.claude_projects_dir


def _phrase(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def build_synthetic_town(workdir: Path, n_documents: int, seed: int = 11) -> SyntheticTown:
    town = build_demo_town(workdir, seed=seed, with_bad_inputs=False)
    rng = random.Random(f"synthetic:{seed}:{n_documents}")
    want = {k: max(1, int(n_documents * v)) for k, v in MIX.items()}
    made = dict.fromkeys(MIX, 0)
    root = town.root

    beads = [
        json.loads(x)
        for x in (root / "ledger/mayor/rig/.beads/issues.jsonl").read_text().splitlines()
        if x.startswith("{")
    ]
    beads = [b for b in beads if b.get("status") != "tombstone"]
    with open(root / "ledger/mayor/rig/.beads/issues.jsonl", "a") as fh:
        for i in range(want["beads"]):
            b = dict(rng.choice(beads))
            b["id"] = f"le-s{i:06x}"
            b["title"] = f"{b.get('title', '')} ({_phrase(rng, 4)})"
            b["description"] = f"{b.get('description') or ''}\n\n{_phrase(rng, 30)}"
            b["dependencies"] = []
            if i and rng.random() < 0.3:
                b["dependencies"] = [
                    {"issue_id": b["id"], "depends_on_id": f"le-s{rng.randrange(i):06x}", "type": "blocks"}
                ]
            fh.write(json.dumps(b) + "\n")
            made["beads"] += 1

    templates = sorted((root / "ledger/mayor/rig/internal/formula/formulas").glob("*.formula.toml"))
    out_dir = root / "courier/mayor/rig/.beads/formulas"
    for i in range(want["formulas"]):
        src = rng.choice(templates)
        text = src.read_text()
        name = f"syn-{i:05d}-{src.name.split('.')[0]}"
        text = re.sub(r'(?m)^formula = "[^"]*"', f'formula = "{name}"', text, count=1)
        text = re.sub(r'(?m)^description = """', f'description = """{_phrase(rng, 12)}.\n', text, count=1)
        (out_dir / f"{name}.formula.toml").write_text(text)
        made["formulas"] += 1

    sessions = sorted(town.claude_projects_dir.glob("*/*.jsonl"))
    for _ in range(want["transcripts"]):
        src = rng.choice(sessions)
        sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        text = src.read_text(errors="replace")
        old = src.stem
        text = text.replace(old, sid).replace("Hooked bead", f"Hooked bead ({_phrase(rng, 3)})")
        (src.parent / f"{sid}.jsonl").write_text(text)
        made["transcripts"] += 1

    events = (root / ".events.jsonl").read_text().splitlines()
    with open(root / ".events.jsonl", "a") as fh:
        for _ in range(want["events"]):
            e = json.loads(rng.choice(events))
            e["payload"] = {**(e.get("payload") or {}), "note": _phrase(rng, 6)}
            fh.write(json.dumps(e) + "\n")
            made["events"] += 1

    claude = (root / "ledger/mayor/rig/CLAUDE.md").read_text()
    for i in range(want["conventions"]):
        d = root / "ledger/mayor/rig/services" / f"svc{i:04d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "CLAUDE.md").write_text(f"# svc{i:04d}\n\n{_phrase(rng, 20)}\n\n{claude}")
        made["conventions"] += 1
    return SyntheticTown(town, made)


def remove_town(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
