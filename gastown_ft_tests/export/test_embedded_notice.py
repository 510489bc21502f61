"""A model tuned from the tiny embedded base says so plainly: `models list/show`, `status`, `serve`.

The registry holds v1 tuned from the embedded base (source "embedded", as the export records it), v2
from a real preset, and v3 from the embedded base recorded by name only (older manifests).
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from gastown_ft.export.registry import Registry, embedded_base_notice, is_embedded_base, model_base
from gastown_ft.report import detail_lines
from gastown_ft.serve.engine import ModelChoice
from gastown_ft.serve.selection import base_notice, choose_model
from gastown_ft_tests.export.test_registry import PASSED, make_bundle

EMBEDDED = {"name": "embedded", "source": "embedded", "fingerprint": "sha256:e1"}
PRESET = {"name": "HuggingFaceTB/SmolLM2-135M-Instruct", "source": "preset", "fingerprint": "sha256:p1"}
NOT_REAL = "not a real language model; for tests"


def _manifest(base: dict, parameters: int) -> dict:
    return {
        "corpus_version": "c" * 64,
        "base_model": base,
        "eval": PASSED,
        "merge": {"parameters": parameters},
    }


@pytest.fixture
def configured(tmp_path):
    cfg = tmp_path / "gastown-ft.toml"
    cfg.write_text('[artifacts]\ndir = "artifacts"\n')
    reg = Registry(tmp_path / "artifacts" / "registry")
    reg.register(make_bundle(tmp_path / "e1", b"1" * 100), _manifest(EMBEDDED, 4_200_000))
    reg.register(make_bundle(tmp_path / "e2", b"2" * 100), _manifest(PRESET, 134_515_008))
    reg.register(make_bundle(tmp_path / "e3", b"3" * 100), _manifest({"name": "embedded"}, 90_000))
    return cfg, reg


def _cli(cfg: Path, *args: str):
    from gastown_ft.cli import app

    out = CliRunner().invoke(app, ["--config", str(cfg), *args], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return out


def test_the_notice_follows_the_recorded_base():
    assert (
        is_embedded_base(EMBEDDED) and is_embedded_base({"name": "embedded"}) and is_embedded_base("embedded")
    )
    assert not is_embedded_base(PRESET)
    # A local directory that happens to be called "embedded" is not the embedded model.
    assert not is_embedded_base({"name": "embedded", "source": "local"})
    assert not is_embedded_base(None) and embedded_base_notice(PRESET) is None
    notice = embedded_base_notice(EMBEDDED, 4_200_000)
    assert NOT_REAL in notice and "tiny embedded model" in notice and "4.2M parameters" in notice


def test_models_list_and_show_name_the_embedded_base(configured):
    cfg, reg = configured
    reg.promote("v1")
    table = _cli(cfg, "models", "list").output
    warning = next(line for line in table.splitlines() if line.startswith("warning:"))
    assert "v1 (promoted), v3" in warning and "v2" not in warning and NOT_REAL in warning
    rows = {r["version"]: r for r in json.loads(_cli(cfg, "models", "list", "--json").output)}
    assert NOT_REAL in rows["v1"]["base_notice"] and NOT_REAL in rows["v3"]["base_notice"]
    assert rows["v2"]["base_notice"] is None

    shown = _cli(cfg, "models", "show", "v1").output
    assert f"  WARNING       {reg.get('v1').base_notice}" in shown and "4.2M parameters" in shown
    assert "WARNING" not in _cli(cfg, "models", "show", "v2").output
    assert NOT_REAL in json.loads(_cli(cfg, "models", "show", "v3", "--json").output)["base_notice"]


def _status_state(base_meta: dict, export_meta: dict) -> dict:
    return {
        "base_model": {"metadata": base_meta, "failed_checks": [], "checks": []},
        "exported_model": {"metadata": export_meta, "failed_checks": [], "checks": []},
    }


def test_status_says_when_the_exported_or_served_model_is_on_the_embedded_base(configured):
    _, reg = configured
    reg.promote("v1")
    v1 = reg.get("v1")
    # The last export is v1 on the embedded base, and it is what serve uses.
    lines = detail_lines(
        _status_state(
            {"name": "embedded", "source": "embedded", "parameters": 4_200_000, "fingerprint": "sha256:e1"},
            {"version": "v1", "promoted": True, "registry": str(reg.root), "base_notice": v1.base_notice},
        )
    )
    text = "\n".join(lines)
    assert f"v1: {v1.base_notice}" in text
    assert text.count(NOT_REAL) == 2  # the base model line and the export line; not repeated
    # The last export is v2 (a real base) but v1 is still the promoted one: the served line says so.
    lines = detail_lines(
        _status_state(
            {"name": PRESET["name"], "source": "preset", "fingerprint": "sha256:p1"},
            {"version": "v2", "promoted": False, "registry": str(reg.root)},
        )
    )
    served = [ln for ln in lines if "served model" in ln or NOT_REAL in ln]
    assert served[0].endswith("v1 (promoted: `gastown-ft serve` uses it)")
    assert f"v1: {v1.base_notice}" in served[1] and len(served) == 2
    # Once v2 is promoted, nothing says "tiny" any more.
    reg.promote("v2")
    lines = detail_lines(
        _status_state(
            {"name": PRESET["name"], "source": "preset", "fingerprint": "sha256:p1"},
            {"version": "v2", "promoted": True, "registry": str(reg.root)},
        )
    )
    assert not any(NOT_REAL in ln or "served model" in ln for ln in lines)


def test_serve_finds_the_base_of_a_version_or_a_model_directory(configured, tmp_path):
    _, reg = configured
    reg.promote("v1")
    choice, _ = choose_model(reg, None)
    assert base_notice(choice, reg) == reg.get("v1").base_notice
    # A version's merged directory, served by path: the manifest above it says.
    assert base_notice(choose_model(reg, str(reg.get("v3").bundle_dir))[0]) == reg.get("v3").base_notice
    assert base_notice(choose_model(reg, str(reg.get("v2").bundle_dir))[0]) is None
    # A copy outside the registry: the merge report the export writes beside the weights says.
    copy = Path(shutil.copytree(reg.get("v2").merged_dir, tmp_path / "copy"))
    assert model_base(copy) == (None, None) and base_notice(ModelChoice(copy)) is None
    (copy / "merge.json").write_text(json.dumps({"parameters": 4_200_000, "base_model": EMBEDDED}))
    assert base_notice(ModelChoice(copy)) == embedded_base_notice(EMBEDDED, 4_200_000)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _FakeEngine:
    device = "cpu"

    def __init__(self, choice, **_kw):
        self.choice = choice
        self.loaded = SimpleNamespace(note=None)

    def engine_summary(self) -> str:
        return "transformers (faked)"


@pytest.mark.parametrize("version,tiny", [("v1", True), ("v2", False)])
def test_serve_banner_warns_about_the_embedded_base(configured, monkeypatch, version, tiny):
    import uvicorn

    import gastown_ft.serve.app
    import gastown_ft.serve.engine

    cfg, reg = configured
    reg.promote(version)
    served = []
    monkeypatch.setattr(gastown_ft.serve.engine, "Engine", _FakeEngine)
    monkeypatch.setattr(gastown_ft.serve.app, "create_app", lambda engine, name: engine)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    out = _cli(cfg, "serve", "--port", str(_free_port()))
    assert [e.choice.version for e in served] == [version]  # the model was "served" (faked)
    banner = out.stdout
    assert f"serving {version} on http://127.0.0.1:" in banner
    if tiny:
        assert f"  WARNING    {reg.get(version).base_notice}" in banner
        assert f"{version}: {reg.get(version).base_notice}" in out.stderr
    else:
        assert NOT_REAL not in banner + out.stderr
