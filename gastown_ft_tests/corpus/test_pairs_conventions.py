from __future__ import annotations

from gastown_ft.config import TownConfig
from gastown_ft.corpus.conventions import read_conventions
from gastown_ft.corpus.documents import ReadLog, documents_to_table
from gastown_ft.corpus.pairs_conventions import build_convention_examples, question_for, sections
from gastown_ft.corpus.scan import TownScan

DOC = """# Polecat Context
Intro text that is long enough to matter for the example builder to keep it around, surely.

## When Your Work Is Done
Run the tests, commit, push, then run `gt done`. The refinery merges; you never merge yourself.
Do not wait for confirmation.

```bash
# Not a heading
gt done
```

## Escalation
If you are stuck for more than one patrol cycle, mail the witness with `gt mail send ledger/witness`.
"""


def test_sections_skip_fenced_code():
    found = dict((tuple(h), b) for h, b in sections(DOC))
    assert ("Polecat Context", "When Your Work Is Done") in found
    assert "# Not a heading" in found[("Polecat Context", "When Your Work Is Done")]
    assert len(found) == 3


def test_intent_questions_are_in_the_role_voice():
    assert question_for("When Your Work Is Done", "polecat", "role_template", "polecat").startswith(
        "As the polecat, what do I do when my work is done?"
    )
    assert "escalate" in question_for("Escalation", "witness", "claude_md", "CLAUDE")
    assert question_for("Staging", None, "claude_md", "CLAUDE") == "What are the conventions for staging?"


def test_examples_from_a_role_template():
    rows = [
        {
            "doc_id": "c1",
            "path": "ledger/internal/templates/roles/polecat.md.tmpl",
            "kind": "role_template",
            "rig": "ledger",
            "role": "polecat",
            "text": DOC,
            "mtime": 2.0,
            "meta": "{}",
        }
    ]
    ex = list(build_convention_examples(rows))
    qs = [e["messages"][1]["content"] for e in ex]
    assert any("work is done" in q for q in qs) and any("escalate" in q for q in qs)
    done = next(e for e in ex if "work is done" in e["messages"][1]["content"])
    assert "gt done" in done["messages"][2]["content"]
    assert all(e["group_id"] == "convention:ledger/internal/templates/roles/polecat.md.tmpl" for e in ex)
    assert "polecat" in done["messages"][0]["content"] and "`ledger`" in done["messages"][0]["content"]


def test_demo_conventions(demo_town):
    scan = TownScan(TownConfig(root=demo_town.root, claude_projects_dir=demo_town.claude_projects_dir))
    rows = documents_to_table(list(read_conventions(scan, ReadLog()))).to_pylist()
    ex = list(build_convention_examples(rows))
    assert len(ex) >= 10
    assert {e["role"] for e in ex} >= {"mayor", "polecat", "witness", "refinery"}
    # The operator's directives (town and rig `directives/<role>.md`) are taught in their role's voice.
    directives = [e for e in ex if "directive" in e["messages"][1]["content"]]
    assert directives and {e["role"] for e in directives} <= {
        "polecat",
        "witness",
        "refinery",
        "mayor",
        "crew",
    }
    assert any("gt done" in e["messages"][2]["content"] for e in directives if e["role"] == "polecat")
