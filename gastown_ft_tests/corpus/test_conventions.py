from __future__ import annotations

from pathlib import Path

import pytest

from gastown_ft.config import TownConfig
from gastown_ft.corpus.conventions import convention_kind, read_conventions, role_of
from gastown_ft.corpus.documents import ReadLog
from gastown_ft.corpus.scan import TownScan


@pytest.mark.parametrize(
    "path,kind",
    [
        ("CLAUDE.md", "claude_md"),
        ("rig/templates/polecat-CLAUDE.md", "claude_md"),
        ("rig/AGENTS.md", "agents_md"),
        ("rig/internal/templates/roles/witness.md.tmpl", "role_template"),
        ("rig/internal/templates/messages/nudge.md.tmpl", "message_template"),
        ("rig/.claude/commands/patrol.md", "command"),
        ("rig/.claude/skills/pr-list/SKILL.md", "skill"),
        ("rig/internal/config/roles/mayor.toml", "role_config"),
        ("rig/formula-overlays/mol-polecat-work.toml", "formula_overlay"),
        ("directives/polecat.md", "directive"),
        ("rig/directives/witness.md", "directive"),
        ("rig/.beads/PRIME.md", "prime"),
        ("rig/docs/concepts/convoy.md", "doc"),
        ("rig/README.md", None),
        ("rig/.beads/formulas/x.formula.toml", None),
        ("rig/main.go", None),
    ],
)
def test_kinds(path, kind):
    assert convention_kind(Path(path)) == kind


@pytest.mark.parametrize(
    "rel,role",
    [
        ("mayor/CLAUDE.md", "mayor"),
        ("rig/templates/witness-CLAUDE.md", "witness"),
        ("rig/internal/templates/roles/refinery.md.tmpl", "refinery"),
        ("rig/polecats/nux/CLAUDE.md", "polecat"),
        ("rig/AGENTS.md", None),
    ],
)
def test_roles(rel, role):
    assert role_of(rel) == role


def test_read_with_exclusions_and_bad_toml(tmp_path):
    root = tmp_path / "town"
    for rel, text in {
        "CLAUDE.md": "# Town rules\nBe kind.",
        "mayor/CLAUDE.md": "# Mayor\nDispatch work.",
        "alpha/AGENTS.md": "# Alpha agents\n",
        "alpha/internal/config/roles/polecat.toml": "role = 'polecat'\n[session\n",
        "alpha/secret/CLAUDE.md": "# keep out",
        "beta/CLAUDE.md": "# Beta",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    cfg = TownConfig(
        root=root, claude_projects_dir=root / "x", exclude=["alpha/secret/*"], exclude_rigs=["beta"]
    )
    log = ReadLog()
    docs = {d.path: d for d in read_conventions(TownScan(cfg), log)}
    assert sorted(docs) == ["CLAUDE.md", "alpha/AGENTS.md", "mayor/CLAUDE.md"]
    assert docs["mayor/CLAUDE.md"].role == "mayor" and docs["mayor/CLAUDE.md"].rig is None
    assert docs["alpha/AGENTS.md"].rig == "alpha"
    assert [(q.path, q.reason) for q in log.quarantined] == [
        ("alpha/internal/config/roles/polecat.toml", "invalid_toml")
    ]
