"""The model registry: versions, promotion only after a passing eval, integrity, rollback, concurrency, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gastown_ft.errors import GastownFTError
from gastown_ft.export.registry import Registry, file_sha256

PASSED = {"passed": True, "metrics": {"task_exact": 0.61, "heldout_loss": 1.93}}
FAILED = {"passed": False, "metrics": {"task_exact": 0.12}}


def make_bundle(where: Path, weights: bytes, *, gguf: bool = True) -> Path:
    """An export bundle as the export step lays it out (contents stand in for real weights)."""
    merged = where / "merged"
    merged.mkdir(parents=True)
    (merged / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    (merged / "model.safetensors").write_bytes(weights)
    (merged / "tokenizer.json").write_text('{"model": {}}')
    if gguf:
        (where / "model.gguf").write_bytes(b"GGUF" + weights[:64])
        (where / "Modelfile").write_text("FROM ./model.gguf\n")
    (where / "README.md").write_text("# model card\n")
    return where


def manifest(eval_: dict | None = PASSED, **extra) -> dict:
    m = {
        "created": "2026-12-01T10:00:00+00:00",
        "corpus_version": "c0ffee" * 8,
        "base_model": {"name": "embedded", "fingerprint": "sha256:abc"},
        **extra,
    }
    if eval_ is not None:
        m["eval"] = eval_
    return m


def test_register_numbers_versions_and_records_the_files(tmp_path):
    reg = Registry(tmp_path / "registry")
    assert reg.versions() == [] and reg.current() is None
    v1 = reg.register(make_bundle(tmp_path / "e1", b"a" * 1000), manifest())
    v2 = reg.register(make_bundle(tmp_path / "e2", b"b" * 1000), manifest(FAILED))
    assert (v1, v2) == ("v1", "v2")
    assert [v.version for v in reg.versions()] == ["v1", "v2"]

    mv = reg.get("2")  # "2", "v2" and "V2" all name it
    assert mv.version == "v2" and not mv.eval_passed and reg.get("v1").eval_passed
    files = mv.manifest["files"]
    assert set(files) == {
        "merged/config.json",
        "merged/model.safetensors",
        "merged/tokenizer.json",
        "model.gguf",
        "Modelfile",
        "README.md",
    }
    stored = mv.bundle_dir / "merged" / "model.safetensors"
    assert files["merged/model.safetensors"] == {"sha256": file_sha256(stored), "bytes": 1000}
    assert mv.merged_dir == mv.bundle_dir / "merged" and (mv.merged_dir / "config.json").is_file()
    assert mv.manifest["corpus_version"] == "c0ffee" * 8
    assert mv.manifest["base_model"]["fingerprint"] == "sha256:abc"
    assert reg.verify("v2") == []


def test_the_same_bundle_twice_is_one_version(tmp_path):
    reg = Registry(tmp_path / "registry")
    first = reg.register(make_bundle(tmp_path / "e1", b"x" * 500), manifest())
    again = reg.register(make_bundle(tmp_path / "e1-copy", b"x" * 500), manifest(created="later"))
    other = reg.register(make_bundle(tmp_path / "e2", b"y" * 500), manifest())
    assert first == again == "v1" and other == "v2"
    assert len(reg.versions()) == 2


def test_a_registered_version_is_a_copy_the_next_export_cannot_change(tmp_path):
    reg = Registry(tmp_path / "registry")
    export = make_bundle(tmp_path / "export", b"1" * 300)
    v = reg.register(export, manifest())
    (export / "merged" / "model.safetensors").write_bytes(b"2" * 300)  # the next export, in place
    assert reg.verify(v) == []
    assert (reg.get(v).merged_dir / "model.safetensors").read_bytes() == b"1" * 300


def test_register_with_move_takes_the_bundle(tmp_path):
    reg = Registry(tmp_path / "registry")
    export = make_bundle(tmp_path / "export", b"m" * 100)
    v = reg.register(export, manifest(), move=True)
    assert not export.exists() and reg.verify(v) == []


def test_register_refuses_what_is_not_a_bundle_or_does_not_match_its_manifest(tmp_path):
    reg = Registry(tmp_path / "registry")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GastownFTError, match="no merged/config.json"):
        reg.register(tmp_path / "empty", manifest())
    bundle = make_bundle(tmp_path / "e", b"z" * 100)
    claimed = {
        "merged/model.safetensors": "0" * 64,
        "merged/config.json": file_sha256(bundle / "merged/config.json"),
    }
    with pytest.raises(GastownFTError, match="does not match its own manifest: merged/model.safetensors"):
        reg.register(bundle, manifest(files=claimed))
    claimed["merged/model.safetensors"] = file_sha256(bundle / "merged/model.safetensors")
    assert reg.register(bundle, manifest(files=claimed)) == "v1"
    assert not (reg.root / ".staging").exists() or not any((reg.root / ".staging").iterdir())


@pytest.mark.parametrize("eval_,needle", [(FAILED, "did not pass"), (None, "no evaluation")])
def test_no_promotion_without_a_passing_eval(tmp_path, eval_, needle):
    reg = Registry(tmp_path / "registry")
    v = reg.register(make_bundle(tmp_path / "e", b"f" * 100), manifest(eval_))
    with pytest.raises(GastownFTError, match=needle):
        reg.promote(v)
    assert reg.current() is None and reg.history()[-1]["event"] == "register"


@pytest.mark.parametrize("damage", ["change", "delete"])
def test_no_promotion_of_damaged_files(tmp_path, damage):
    reg = Registry(tmp_path / "registry")
    v = reg.register(make_bundle(tmp_path / "e", b"w" * 200), manifest())
    weights = reg.get(v).merged_dir / "model.safetensors"
    if damage == "change":
        weights.write_bytes(b"W" + b"w" * 199)  # same size, different content
    else:
        weights.unlink()
    with pytest.raises(GastownFTError, match="merged/model.safetensors (has changed|is missing)"):
        reg.promote(v)
    assert reg.current() is None


def test_promote_rollback_and_history(tmp_path):
    reg = Registry(tmp_path / "registry")
    vs = [reg.register(make_bundle(tmp_path / f"e{i}", bytes([i]) * 100), manifest()) for i in range(3)]
    with pytest.raises(GastownFTError, match="none is promoted"):
        reg.rollback()
    reg.promote(vs[0])
    with pytest.raises(GastownFTError, match="v1 is the only version ever promoted"):
        reg.rollback()
    reg.promote(vs[1])
    reg.promote(vs[2])
    reg.promote(vs[2])  # promoting the current one again changes nothing
    assert reg.current().version == "v3"
    assert reg.rollback().version == "v2" and reg.current().version == "v2"
    assert reg.rollback().version == "v1"
    with pytest.raises(GastownFTError, match="nothing to roll back to"):
        reg.rollback()
    events = [(e["event"], e["version"], e.get("previous")) for e in reg.history()]
    assert events == [
        ("register", "v1", None),
        ("register", "v2", None),
        ("register", "v3", None),
        ("promote", "v1", None),
        ("promote", "v2", "v1"),
        ("promote", "v3", "v2"),
        ("rollback", "v2", "v3"),
        ("rollback", "v1", "v2"),
    ]
    assert all(e["at"] and "@" in e["by"] for e in reg.history())


def test_rollback_refuses_a_damaged_target(tmp_path):
    reg = Registry(tmp_path / "registry")
    v1 = reg.register(make_bundle(tmp_path / "e1", b"1" * 100), manifest())
    v2 = reg.register(make_bundle(tmp_path / "e2", b"2" * 100), manifest())
    reg.promote(v1)
    reg.promote(v2)
    (reg.get(v1).merged_dir / "config.json").write_text("{}")
    with pytest.raises(GastownFTError, match="cannot roll back to v1"):
        reg.rollback()
    assert reg.current().version == "v2"


def test_unknown_version_names_the_known_ones(tmp_path):
    reg = Registry(tmp_path / "registry")
    reg.register(make_bundle(tmp_path / "e1", b"1" * 10), manifest())
    with pytest.raises(GastownFTError, match="no model version v9") as e:
        reg.get("v9")
    assert "registered: v1" in str(e.value)
    with pytest.raises(GastownFTError, match="not a version id"):
        reg.get("latest")


_REGISTER = """
import sys, time
from pathlib import Path
from gastown_ft.export.registry import Registry
go = Path(sys.argv[3])
while not go.exists():
    time.sleep(0.01)
print(Registry(sys.argv[1]).register(Path(sys.argv[2]), {"eval": {"passed": True}}))
"""


def _register_at_once(root: Path, bundles: list[Path], go: Path) -> list[str]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _REGISTER, str(root), str(b), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for b in bundles
    ]
    go.touch()  # both start registering together
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    return [o[0].strip() for o in outs]


def test_two_processes_registering_at_once_get_distinct_versions(tmp_path):
    root = tmp_path / "registry"
    big = 8 << 20  # copies long enough to overlap
    bundles = [make_bundle(tmp_path / f"e{i}", bytes([i + 1]) * big) for i in range(2)]
    got = _register_at_once(root, bundles, tmp_path / "go1")
    assert sorted(got) == ["v1", "v2"]
    reg = Registry(root)
    assert [v.version for v in reg.versions()] == ["v1", "v2"]
    assert all(reg.verify(v) == [] for v in got)
    # And the same content registered by two processes at once is still one version.
    same = [make_bundle(tmp_path / f"s{i}", b"s" * big) for i in range(2)]
    got = _register_at_once(root, same, tmp_path / "go2")
    assert got == ["v3", "v3"] and len(reg.versions()) == 3
    assert json.loads((root / "state.json").read_text())["next_version"] == 4


# -- the CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def configured(tmp_path):
    """A config whose artifacts dir holds a registry with a passing v1, v2 and a failing v3."""
    cfg = tmp_path / "gastown-ft.toml"
    cfg.write_text('[artifacts]\ndir = "artifacts"\n')
    reg = Registry(tmp_path / "artifacts" / "registry")
    for i, ev in enumerate([PASSED, PASSED, FAILED]):
        reg.register(make_bundle(tmp_path / f"e{i}", bytes([i]) * 100), manifest(ev))
    return cfg, reg


def _cli(cfg: Path, *args: str):
    from gastown_ft.cli import app

    return CliRunner().invoke(app, ["--config", str(cfg), *args], catch_exceptions=True)


def test_cli_list_show_promote_rollback(configured):
    cfg, reg = configured
    out = _cli(cfg, "models", "promote", "v1")
    assert out.exit_code == 0 and "promoted v1" in out.output
    out = _cli(cfg, "models", "promote", "2")
    assert out.exit_code == 0 and "promoted v2 (was v1)" in out.output
    rows = json.loads(_cli(cfg, "models", "list", "--json").output)
    assert [(r["version"], r["promoted"], r["eval"]["passed"]) for r in rows] == [
        ("v1", False, True),
        ("v2", True, True),
        ("v3", False, False),
    ]
    table = _cli(cfg, "models", "list").output
    assert "promoted: v2" in table and "failed" in table
    shown = json.loads(_cli(cfg, "models", "show", "v2", "--verify", "--json").output)
    assert shown["promoted"] and shown["problems"] == [] and shown["version"] == "v2"
    text = _cli(cfg, "models", "show", "v3").output
    assert "eval          failed" in text and "task_exact = 0.12" in text
    out = _cli(cfg, "models", "rollback")
    assert out.exit_code == 0 and "rolled back from v2 to v1" in out.output
    assert reg.current().version == "v1"
    hist = json.loads(_cli(cfg, "models", "history", "--json").output)
    assert [e["event"] for e in hist][-3:] == ["promote", "promote", "rollback"]


# The `gastown-ft` entry point (not `-m gastown_ft.cli`, which would load a second copy of the module).
GFT = "from gastown_ft.cli import main; main()"


def test_cli_refusal_is_one_clear_line(configured):
    cfg, _ = configured
    env = {k: v for k, v in os.environ.items() if k != "GASTOWN_FT_CONFIG"}
    out = subprocess.run(
        [sys.executable, "-c", GFT, "--config", str(cfg), "models", "promote", "v3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert "cannot promote v3: its evaluation did not pass" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_prune_keeps_the_newest_and_whatever_serve_or_rollback_needs(tmp_path):
    reg = Registry(tmp_path / "registry")
    vs = [reg.register(make_bundle(tmp_path / f"e{i}", bytes([i]) * 50), manifest()) for i in range(6)]
    reg.promote(vs[0])
    reg.promote(vs[1])  # v2 current, v1 the rollback target
    assert reg.prune(2) == ["v3", "v4"]
    assert [v.version for v in reg.versions()] == ["v1", "v2", "v5", "v6"]
    assert reg.prune(2) == []
    reg.promote("v6")
    assert reg.prune(1) == ["v1", "v5"]  # v2 is now the rollback target, v6 the promoted one
    assert reg.rollback().version == "v2"
    with pytest.raises(GastownFTError, match="nothing to roll back to"):
        reg.rollback()  # v1 was pruned: the history does not point at it any more
    assert reg.register(make_bundle(tmp_path / "new", b"n" * 50), manifest()) == "v7"  # numbers never reused
    assert reg.history()[-1]["event"] == "register" and any(e["event"] == "prune" for e in reg.history())
