from __future__ import annotations

from pathlib import Path

import pytest

from gastown_ft.config import Settings, TownConfig, load_settings, render_settings_toml
from gastown_ft.errors import GastownFTError


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GASTOWN_FT_CONFIG", raising=False)
    s = load_settings()
    assert s.town.root == Path("~/gt").expanduser()
    assert s.town.sources == ["formulas", "beads", "conventions", "transcripts", "events"]
    assert s.artifacts.dir == tmp_path / ".gastown-ft/artifacts"


def test_relative_paths_resolve_against_the_file(tmp_path):
    cfg = tmp_path / "conf" / "gastown-ft.toml"
    cfg.parent.mkdir()
    cfg.write_text(
        '[town]\nroot = "../town"\nrigs = ["alpha"]\nsources = ["formulas"]\n'
        'exclude = ["alpha/secret/*"]\n[artifacts]\ndir = "out"\n'
    )
    s = load_settings(cfg)
    assert s.town.root == tmp_path / "town"
    assert s.town.rigs == ["alpha"] and s.town.sources == ["formulas"]
    assert s.artifacts.dir == tmp_path / "conf" / "out"
    assert s.config_path == cfg.resolve()


@pytest.mark.parametrize(
    "body,needle",
    [
        ('[town]\nroot = "x"\nrigz = ["a"]\n', "town.rigz: unknown key"),
        ('[town]\nsources = ["formulas", "tweets"]\n', "town.sources.1"),
        ("[town]\nmax_file_mb = -3\n", "town.max_file_mb"),
        ('[town]\nsources = ["beads", "beads"]\n', "lists a source kind twice"),
        ("[trainng]\nepochs = 3\n", "trainng: unknown key"),
        ('[town\nroot = "x"\n', "is not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path, body, needle):
    cfg = tmp_path / "gastown-ft.toml"
    cfg.write_text(body)
    with pytest.raises(GastownFTError) as e:
        load_settings(cfg)
    assert needle in str(e.value)
    assert str(cfg) in str(e.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(GastownFTError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_render_round_trips(tmp_path):
    s = Settings(town=TownConfig(root=tmp_path / "t", rigs=["a", "b"], exclude=['x/"q"/*']))
    cfg = tmp_path / "gastown-ft.toml"
    cfg.write_text(render_settings_toml(s))
    back = load_settings(cfg)
    assert back.town.rigs == ["a", "b"] and back.town.exclude == ['x/"q"/*']
    assert back.town.root == tmp_path / "t"
