"""The town check: real and flat layouts pass, a missing, empty or wrong root is one clear error, and the
transcript folders it lists are the ones the transcripts reader reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from gastown_ft.config import TownConfig
from gastown_ft.corpus.documents import ReadLog
from gastown_ft.corpus.scan import TownScan
from gastown_ft.corpus.town_check import check_town, check_town_for, transcript_folders
from gastown_ft.corpus.transcripts import encode_project_dir, transcript_files
from gastown_ft.errors import GastownFTError
from gastown_ft_tests.automation.small_town import make_small_town


def real_layout_town(base: Path) -> Path:
    """The directory structure of architecture.md: rigs are containers whose clone is mayor/rig."""
    root = base / "gt"
    for d in ("mayor", ".beads", "deacon/dogs/alpha", "daemon", ".dolt-data/hq", "settings"):
        (root / d).mkdir(parents=True)
    (root / "mayor" / "town.json").write_text('{"name": "gt"}\n')
    (root / "mayor" / "rigs.json").write_text('{"rigs": {"gastown": {}}}\n')
    (root / ".beads" / "routes.jsonl").write_text('{"prefix":"hq-","path":"."}\n')
    (root / "CLAUDE.md").write_text("# Gas Town\n")
    rig = root / "gastown"
    (rig / "mayor" / "rig" / ".beads").mkdir(parents=True)
    (rig / "refinery" / "rig").mkdir(parents=True)
    (rig / "polecats" / "nux" / "gastown").mkdir(parents=True)
    (rig / "config.json").write_text('{"prefix": "gt"}\n')
    return root


def test_the_real_layout_passes(tmp_path):
    root = real_layout_town(tmp_path)
    check = check_town(TownConfig(root=root, claude_projects_dir=tmp_path / "none"))
    assert check.layout == "gas town" and check.rigs == ["gastown"]
    assert "mayor/town.json" in check.signs
    text = "\n".join(check.lines())
    assert "a Gas Town (gas town layout" in text and "does not exist: no session transcripts" in text


def test_the_real_layout_fixture_passes_with_its_registered_rigs(tmp_path):
    from gastown_ft_tests.corpus.real_layout import make_real_town

    town = make_real_town(tmp_path)
    check = check_town(town.config())
    assert check.layout == "gas town" and check.rigs == ["alpha", "beta"]  # from mayor/rigs.json
    assert len(check.transcript_dirs) == 1 and check.transcript_files == 1


def test_the_demo_town_and_the_flat_test_towns_pass(demo_town, tmp_path):
    check = check_town(TownConfig(root=demo_town.root, claude_projects_dir=demo_town.claude_projects_dir))
    assert check.layout in ("gas town", "flat") and set(check.rigs) == set(demo_town.rigs)
    assert check.transcript_dirs and check.transcript_files > 0
    small = make_small_town(tmp_path, rigs=("alpha", "beta"))
    check = check_town(small.config())
    assert check.layout == "flat" and check.rigs == ["alpha", "beta"] and len(check.transcript_dirs) == 2


def test_transcript_folders_are_those_the_reader_reads(demo_town):
    cfg = TownConfig(root=demo_town.root, claude_projects_dir=demo_town.claude_projects_dir)
    dirs, n_files = transcript_folders(cfg)
    read = transcript_files(TownScan(cfg), ReadLog())
    projects = demo_town.claude_projects_dir
    in_projects = [p for p, _ in read if p.is_relative_to(projects)]
    assert {p.relative_to(projects).parts[0] for p in in_projects} == {d.name for d in dirs}
    assert n_files == len(in_projects)


def _error(cfg: TownConfig) -> str:
    with pytest.raises(GastownFTError) as e:
        check_town(cfg)
    return str(e.value)


def test_missing_empty_and_wrong_roots_are_one_clear_error(tmp_path):
    missing = _error(TownConfig(root=tmp_path / "gt"))
    assert missing.startswith(f"the town root {tmp_path / 'gt'} does not exist") and "hint:" in missing
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_text("")
    assert _error(TownConfig(root=tmp_path / "empty")).startswith(
        f"the town root {tmp_path / 'empty'} is empty"
    )
    (tmp_path / "file").write_text("x")
    assert "is a file, not a directory" in _error(TownConfig(root=tmp_path / "file"))
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "README.md").write_text("hi")
    assert "is not a Gas Town root: no mayor/, .beads/ or rig directories" in _error(TownConfig(root=project))
    (project / ".beads" / "formulas").mkdir(parents=True)
    (project / "CLAUDE.md").write_text("# a beads project\n")
    assert "a single beads project?" in _error(TownConfig(root=project))
    for message in (missing, _error(TownConfig(root=project))):
        assert len(message.splitlines()) == 2  # what is wrong, and the hint


def test_a_rig_or_a_folder_inside_a_town_names_the_town(tmp_path):
    root = real_layout_town(tmp_path)
    rig = _error(TownConfig(root=root / "gastown"))
    assert "is a rig of a town" in rig and f"set [town] root to the town: {root}" in rig
    inner = _error(TownConfig(root=root / "gastown" / "polecats"))
    assert f"it lies inside the town {root}" in inner
    flat = make_small_town(tmp_path / "flat")
    flat_rig = _error(TownConfig(root=flat.root / "alpha"))
    assert "a single beads project?" in flat_rig and f"it lies inside the town {flat.root}" in flat_rig


def test_transcripts_only_needs_matching_project_folders(tmp_path):
    root, projects = tmp_path / "gone" / "gt", tmp_path / "projects"
    cfg = TownConfig(root=root, claude_projects_dir=projects, sources=["transcripts"])
    assert "no Claude Code project folder" in _error(cfg)
    session = projects / encode_project_dir(root / "mayor") / "s.jsonl"
    session.parent.mkdir(parents=True)
    session.write_text("{}\n")
    check = check_town(cfg)  # the root itself need not exist: only its name matches the folders
    assert check.layout == "transcripts only" and check.transcript_files == 1


def test_only_runs_that_read_the_town_are_checked(tmp_path):
    cfg = TownConfig(root=tmp_path / "missing")
    assert check_town_for(cfg, ["corpus_splits", "lora_adapter"]) is None
    for selection in (None, ["raw_beads"], ["quarantine", "corpus_splits"]):
        with pytest.raises(GastownFTError, match="does not exist"):
            check_town_for(cfg, selection)
