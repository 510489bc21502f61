"""`gastown-ft status` says which engine `serve` would run the promoted version on, and why: the
serve code's own decision (`choose_engine`) with the config's [serve] settings.

The registry holds stand-in bundles (the decision reads which files are there, it loads nothing)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gastown_ft.config import load_settings
from gastown_ft.export.registry import Registry
from gastown_ft.llamacpp.runtime import unavailable
from gastown_ft.status import serving_engine
from gastown_ft_tests.export.test_registry import PASSED, make_bundle, manifest

NO_LLAMA_CPP = unavailable()


def _project(tmp_path, serve: str = ""):
    cfg = tmp_path / "gastown-ft.toml"
    cfg.write_text(
        f'[artifacts]\ndir = "artifacts"\n[dagster]\nhome = "dagster"\n[serve]\ndevice = "cpu"\n{serve}'
    )
    reg = Registry(tmp_path / "artifacts" / "registry")
    reg.register(make_bundle(tmp_path / "e1", b"1" * 100, gguf=True), manifest(PASSED))
    reg.register(make_bundle(tmp_path / "e2", b"2" * 100, gguf=False), manifest(PASSED))
    return cfg, reg


def test_status_names_the_engine_serve_would_use_and_why(tmp_path):
    cfg, reg = _project(tmp_path)
    settings = load_settings(cfg)
    assert serving_engine(settings) is None  # nothing promoted yet

    reg.promote("v1")  # has model.gguf
    s = serving_engine(settings)
    assert s["version"] == "v1" and s["requested"] == "auto" and s["gguf_present"] is True
    if NO_LLAMA_CPP:
        assert s["engine"] == "transformers" and s["llama_cpp"] == NO_LLAMA_CPP and NO_LLAMA_CPP in s["why"]
    else:
        assert s["engine"] == "llama.cpp" and s["llama_cpp"] == "importable"
        assert s["why"] == "model.gguf present, llama-cpp-python importable"

    reg.promote("v2")  # no GGUF: auto falls back, and says why
    s = serving_engine(settings)
    assert s["version"] == "v2" and s["engine"] == "transformers" and s["gguf_present"] is False
    assert s["why"].startswith("llama.cpp not used: ")
    assert (NO_LLAMA_CPP or "no model.gguf beside") in s["why"]


def test_status_shows_a_refusal_when_serve_would_refuse(tmp_path):
    cfg, reg = _project(tmp_path, 'engine = "llama.cpp"\n')
    reg.promote("v2")
    s = serving_engine(load_settings(cfg))
    assert s["engine"] is None and "cannot serve with llama.cpp" in s["why"]


def test_the_status_command_prints_it(tmp_path):
    from gastown_ft.cli import app

    cfg, reg = _project(tmp_path, 'engine = "transformers"\n')
    reg.promote("v2")
    out = CliRunner().invoke(app, ["--config", str(cfg), "status"], catch_exceptions=False)
    assert out.exit_code == 0
    assert "serve engine: transformers for v2 (requested)" in " ".join(out.output.split())
    out = CliRunner().invoke(app, ["--config", str(cfg), "status", "--json"], catch_exceptions=False)
    serving = json.loads(out.output)["exported_model"]["serving"]
    assert serving["engine"] == "transformers" and serving["version"] == "v2"
