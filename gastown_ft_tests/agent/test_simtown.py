"""The simulated town: state changes, output shapes, the shell subset, and grammar-checked commands."""

from __future__ import annotations

import json

from gastown_ft.agent.episodes import _crew_town, _mayor_town, _polecat_town, _witness_town
from gastown_ft.agent.shell import parse, resolve


def run(town, command):
    r = town.run(command)
    return r.output, r.exit_code


def test_a_polecat_cycle_changes_git_and_beads_as_the_real_town_would():
    town = _polecat_town()
    out, code = run(town, "gt hook")
    assert code == 0 and out.startswith("Hooked: le-7x2q  Note the quoted-payee fix")
    assert "Molecule: le-wisp-p3n  mol-polecat-work" in out
    out, code = run(town, "gt done")
    assert code == 1 and "no commits" in out  # nothing to submit yet
    run(town, "echo '- Importer keeps commas inside quoted payee names' >> CHANGELOG.md")
    out, _ = run(town, "git status --short")
    assert out == " M CHANGELOG.md"
    out, code = run(town, "gt done")
    assert code == 1 and "uncommitted" in out
    out, code = run(
        town, "git add CHANGELOG.md && git commit -m 'docs: changelog (le-7x2q)' && git push -u origin HEAD"
    )
    assert code == 0 and "[polecat/nux/le-7x2q " in out and "* [new branch]" in out
    out, code = run(town, "gt done")
    assert code == 0 and out.startswith("Submitted merge request le-") and "POLECAT_DONE" in out
    assert town.done and town.merge_requests[0]["bead"] == "le-7x2q"
    assert town.repo.remote["main"] == town.repo.branches["main"]  # main untouched


def test_invalid_gt_and_bd_commands_fail_with_the_grammar_message_and_are_counted():
    town = _polecat_town()
    out, code = run(town, "bd update le-7x2q --state done")
    assert code == 1 and out.startswith("Error: unknown flag --state")
    out, code = run(town, "gt polecat frobnicate")
    assert code == 1 and "unknown subcommand" in out
    out, code = run(town, "bd update le-7x2q --status done")  # valid syntax, invalid value: bd's own error
    assert code == 1 and "invalid status 'done'" in out
    assert town.invalid == ["bd update le-7x2q --state done", "gt polecat frobnicate"]
    out, code = run(town, "gt feed")  # valid, not modelled: says so and changes nothing
    assert code == 0 and "not modelled" in out and town.unsimulated == ["gt feed"]


def test_beads_commands_and_their_output_shapes():
    town = _mayor_town()
    out, code = run(town, 'bd new "Rounding drifts by one cent" -t bug -p P1 -l money')
    assert code == 0 and out.startswith("✓ Created issue: le-")
    bead_id = out.split(": ", 1)[1].splitlines()[0]
    out, _ = run(town, "bd list --status open")
    assert f"○ {bead_id} [● P1] [bug] - Rounding drifts by one cent" in out
    out, _ = run(town, f"bd show {bead_id} --json")
    data = json.loads(out)[0]
    assert data["issue_type"] == "bug" and data["priority"] == 1 and data["labels"] == ["money"]
    out, _ = run(town, "bd ready")
    assert out.startswith("📋 Ready work (2 issues") and f"1. [● P1] [bug] {bead_id}" in out
    out, code = run(town, f"gt sling {bead_id} ledger")
    assert code == 0 and out.startswith(f"Slung {bead_id} to ledger/polecats/nux")
    assert town.beads[bead_id].status == "hooked" and town.hooks["ledger/polecats/nux"] == bead_id
    out, code = run(town, f'bd close {bead_id} -r "Merged in 8c1d2e0"')
    assert (out, code) == (f"✓ Closed {bead_id}: Merged in 8c1d2e0", 0)
    out, code = run(town, "gt sling le-zzzzz ledger")
    assert code == 1 and "no issue found" in out


def test_pouring_a_formula_checks_its_variables():
    town = _crew_town()
    out, code = run(town, "bd mol pour mol-ledger-release")
    assert code == 1 and "missing required variable: version" in out
    out, code = run(town, "bd mol pour mol-ledger-release --var version=1.4.0 --var colour=red")
    assert code == 1 and "unknown variable 'colour'" in out
    out, code = run(town, "bd mol pour mol-ledger-release --var version=1.4.0")
    assert code == 0 and "created 5 issues" in out
    (mol,) = town.molecules.values()
    assert mol.vars == {"version": "1.4.0", "channel": "stable"} and len(mol.step_ids) == 4
    assert town.beads[mol.step_ids[1]].deps == [(mol.step_ids[0], "blocks")]


def test_witness_view_nudges_and_a_nuke_loses_unpushed_work():
    town = _witness_town()
    out, _ = run(town, "gt polecat list ledger")
    assert "ledger/polecats/slit" in out and "idle" in out and "22m ago" in out
    out, code = run(town, 'gt nudge ledger/slit "status?"')
    assert code == 0 and town.polecats["ledger/polecats/slit"].nudges == ["status?"]
    out, code = run(town, "gt polecat nuke ledger/slit")
    assert code == 1 and "unpushed" in out  # the real guard; --force overrides it
    out, code = run(town, "gt polecat nuke ledger/slit --force")
    assert code == 0 and town.events[-1]["destructive"] and town.events[-1]["lost_commits"] == 2


def test_shell_subset_pipes_redirections_and_here_documents():
    town = _polecat_town()
    out, code = run(town, "cat > notes.md <<'EOF'\nline one\nline two\nEOF\nwc -l notes.md")
    assert (out, code) == ("2", 0)
    assert town.repo.files["notes.md"] == "line one\nline two\n"
    out, code = run(town, "grep -c Unreleased CHANGELOG.md || echo none")
    assert (out, code) == ("1", 0)
    out, code = run(town, "false && echo no; echo yes")
    assert (out, code) == ("yes", 0)
    out, code = run(town, "cat missing.md")
    assert code == 1 and "No such file" in out
    out, code = run(town, 'git commit -m "$(date)"')
    assert code == 2 and "not simulated" in out
    out, code = run(town, "cargo build")
    assert code == 127
    out, code = run(town, "git reset --hard")
    assert code == 0 and "notes.md" in town.repo.files  # untracked files survive reset, as in git
    assert town.read_file("ledger/importer.py").startswith("import csv")


def test_shell_reader_structure():
    line = parse("A=1 sudo -u bob env B=2 git push -f 2>&1 | tee log && echo `id` ; (cd x && ls) &")
    cmds = list(line.walk())
    inv = resolve(cmds[0])
    assert (inv.program, inv.args, inv.wrappers, inv.env) == (
        "git",
        ["push", "-f"],
        ["sudo", "env"],
        {"A": "1", "B": "2"},
    )
    assert [p.op for p in line.pipelines] == ["", "&&", ";"]
    assert [resolve(c).program for c in cmds] == ["git", "tee", "echo", "id", "cd", "ls"]
    assert parse("echo 'open").errors == ["unbalanced single quote"]
    assert parse('git commit -m "$(cat <<EOF\nmsg\nEOF\n)"').walk()
