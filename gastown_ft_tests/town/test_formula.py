"""`mol-gastown-ft-train`: read by the project's formula reader, every command valid (gt/bd against the
grammar, gastown-ft against this CLI), shaped like the real formulas, and installed into a town."""

from __future__ import annotations

import tomllib

import pytest

from gastown_ft.corpus.formulas import parse_formula
from gastown_ft.corpus.grammar import extract_commands, validate_command
from gastown_ft.errors import GastownFTError
from gastown_ft.town.formula_check import (
    formula_problems,
    formula_texts,
    gastown_ft_commands,
    gastown_ft_problem,
)
from gastown_ft.town.formula_install import FILENAME, FORMULA, install_formula, packaged_formula


@pytest.fixture(scope="module")
def formula() -> dict:
    return tomllib.loads(packaged_formula().read_text(encoding="utf-8"))


def test_the_formula_reads_as_a_workflow_with_its_vars_and_steps(formula):
    parsed = parse_formula(formula, FORMULA)
    assert parsed["name"] == FORMULA and parsed["type"] == "workflow"
    assert parsed["vars"]["config"] == {"description": "Path of the gastown-ft.toml to use", "required": True}
    assert {"base_model", "budget_minutes", "report_to"} <= parsed["vars"].keys()
    ids = [s["id"] for s in parsed["steps"]]
    assert ids == ["configure", "build-corpus", "plan", "train", "evaluate", "export", "promote-or-stop"]
    # a chain: each step needs the one before it
    assert all(s["needs"] == [ids[i]] for i, s in enumerate(parsed["steps"][1:]))
    assert formula_problems(packaged_formula()) == []


def test_every_command_in_it_is_valid(formula):
    gt_bd = [c for t in formula_texts(formula) for c in extract_commands(t)]
    ours = [c for t in formula_texts(formula) for c in gastown_ft_commands(t)]
    assert any(c.startswith("bd mol pour mol-gastown-ft-train") for c in gt_bd)
    assert any(c.startswith("gt sling mol-gastown-ft-train") for c in gt_bd)
    for c in gt_bd:
        assert validate_command(c).ok, (c, validate_command(c).errors)
    # the recipe: build corpus, dry-run plan, train, evaluate, export, promote
    for needed in (
        "materialize --until corpus_splits",
        "train --dry-run",
        " train",
        "--select eval_report",
        "--select exported_model",
        "models promote",
    ):
        assert any(needed in c for c in ours), needed
    for c in ours:
        assert gastown_ft_problem(c) is None, gastown_ft_problem(c)


def test_the_cli_check_rejects_what_the_cli_would():
    assert "No such option" in gastown_ft_problem("gastown-ft --config x train --dry-runn")
    assert "trian" in gastown_ft_problem("gastown-ft trian")
    assert "unexpected extra argument" in gastown_ft_problem("gastown-ft models promote v1 v2")
    assert "names no subcommand" in gastown_ft_problem("gastown-ft models")
    assert gastown_ft_problem("gastown-ft --config x formula install --force") is None


@pytest.mark.shared
def test_its_top_level_keys_are_those_of_real_workflow_formulas(formula, shared_samples):
    real = {}
    for path in sorted(
        (shared_samples / "gastown" / "internal" / "formula" / "formulas").glob("*.formula.toml")
    ):
        real[path.name] = tomllib.loads(path.read_text(encoding="utf-8"))
    keys = set().union(*(d.keys() for d in real.values()))
    assert set(formula) <= keys, set(formula) - keys
    step_keys = set().union(*(s.keys() for d in real.values() for s in d.get("steps") or []))
    assert set().union(*(s.keys() for s in formula["steps"])) <= step_keys | {"acceptance"}
    assert any(d.get("pour") is True for d in real.values())  # pour = true is a real flag


def test_install_puts_it_in_the_towns_formulas_and_is_idempotent(tmp_path):
    (tmp_path / ".beads").mkdir()
    path, state = install_formula(tmp_path)
    assert path == tmp_path / ".beads" / "formulas" / FILENAME and state == "installed"
    assert path.read_bytes() == packaged_formula().read_bytes()
    assert install_formula(tmp_path) == (path, "unchanged")
    path.write_text("# edited\n" + path.read_text())
    with pytest.raises(GastownFTError, match="--force"):
        install_formula(tmp_path)
    assert install_formula(tmp_path, force=True) == (path, "updated")


def test_install_into_a_rig_uses_its_canonical_clone_and_refuses_a_non_town(tmp_path):
    (tmp_path / "ledger").mkdir()
    path, _ = install_formula(tmp_path, rig="ledger")
    assert path == tmp_path / "ledger" / "mayor" / "rig" / ".beads" / "formulas" / FILENAME
    with pytest.raises(GastownFTError, match="no rig"):
        install_formula(tmp_path, rig="nope")
    with pytest.raises(GastownFTError, match="not a Gas Town town root"):
        install_formula(tmp_path / "ledger")


def test_the_town_reader_sees_the_installed_formula_in_the_town_tier(tmp_path):
    from gastown_ft.corpus.formulas import formula_tier

    (tmp_path / ".beads").mkdir()
    path, _ = install_formula(tmp_path)
    assert formula_tier(str(path.relative_to(tmp_path)), None) == "town"


def test_the_cli_installs_it_and_says_how_to_pour_and_sling_it(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gastown_ft import cli
    from gastown_ft.cli import app
    from gastown_ft.config import Settings, TownConfig, render_settings_toml

    (tmp_path / "town" / ".beads").mkdir(parents=True)
    cfg = tmp_path / "gastown-ft.toml"
    cfg.write_text(render_settings_toml(Settings(town=TownConfig(root=tmp_path / "town"))))
    monkeypatch.setitem(cli._state, "config", None)  # the root callback sets it: restored afterwards
    out = CliRunner().invoke(app, ["--config", str(cfg), "formula", "install"])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "town" / ".beads" / "formulas" / FILENAME).is_file()
    assert f"bd mol pour {FORMULA} --var config={cfg}" in out.output
    assert f"gt sling {FORMULA} <rig>/crew/<name>" in out.output
