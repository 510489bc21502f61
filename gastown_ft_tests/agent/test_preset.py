"""The Tier 1 preset: every field is one Gas Town documents (with its type), the required ones are
there, and writing it into settings/agents.json keeps the other agents."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from gastown_ft.agent.preset import preset, registry, registry_path, write_preset
from gastown_ft.cli import app
from gastown_ft.errors import GastownFTError

DOC = "gastown/docs/agent-provider-integration.md"
_TYPES = {
    "string": str,
    "string[]": list,
    "map[string]string": dict,
    "bool": bool,
    "int": int,
    "object": dict,
}


def _documented_fields(text: str) -> dict[str, tuple[type, bool]]:
    section = text.split("### AgentPresetInfo field reference", 1)[1].split("**NonInteractiveConfig**", 1)[0]
    out = {}
    for m in re.finditer(r"^\| `(\w+)` \| ([\w\[\]]+) \| (Yes|No) \|", section, re.M):
        out[m.group(1)] = (_TYPES[m.group(2)], m.group(3) == "Yes")
    return out


@pytest.mark.shared
def test_the_preset_uses_only_documented_fields_with_their_types(shared_samples):
    fields = _documented_fields((shared_samples / DOC).read_text(encoding="utf-8"))
    assert len(fields) >= 20 and fields["name"] == (str, True)
    entry = preset("http://127.0.0.1:8000/v1", "gastown-ft")
    for key, value in entry.items():
        assert key in fields, f"{key} is not an AgentPresetInfo field"
        assert isinstance(value, fields[key][0]), key
    assert {k for k, (_, required) in fields.items() if required} <= set(entry)
    assert entry["prompt_mode"] in ("arg", "none")
    reg = registry(entry)
    assert reg["version"] == 1 and reg["agents"]["gastown-ft"] is entry


def test_the_command_gas_town_builds_from_the_preset_reaches_the_agent(tmp_path, monkeypatch):
    entry = preset("http://127.0.0.1:9/v1", "my-model", name="gt-tuned")
    assert entry["command"] == "gastown-ft"
    assert entry["args"] == [
        "agent",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "my-model",
        "--no-confirm",
    ]
    # Gas Town appends the work instructions (prompt_mode "arg"): the agent starts and reaches for the
    # model (nothing listens on port 9, so it stops there, with the operator's hint).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GT_ROOT", str(tmp_path))
    result = CliRunner().invoke(app, [*entry["args"], "--no-repl", "Work your hook."])
    assert isinstance(result.exception, GastownFTError), result.output
    assert "cannot reach the model at http://127.0.0.1:9/v1" in str(result.exception)
    assert "role ?" in result.output and "context: corpus role prompt" in result.output
    assert list((tmp_path / "logs" / "gastown-ft-agent").glob("*.jsonl")) == []  # no decision was made


def test_writing_merges_into_an_existing_registry(tmp_path):
    path = registry_path(tmp_path, "ledger")
    assert path == tmp_path / "ledger" / "settings" / "agents.json"
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps({"version": 1, "agents": {"kiro": {"name": "kiro", "command": "kiro", "args": []}}})
    )
    write_preset(path, preset("http://127.0.0.1:8000/v1", "gastown-ft"))
    data = json.loads(path.read_text())
    assert set(data["agents"]) == {"kiro", "gastown-ft"} and data["version"] == 1
    path.write_text(json.dumps({"version": 2, "agents": {}}))
    with pytest.raises(GastownFTError, match="version 1"):
        write_preset(path, preset("u", "m"))
    path.write_text("{not json")
    with pytest.raises(GastownFTError, match="not valid JSON"):
        write_preset(path, preset("u", "m"))


def test_preset_command_prints_and_writes(tmp_path):
    runner = CliRunner()
    printed = runner.invoke(app, ["agent", "preset", "--base-url", "http://h:1/v1", "--model", "m"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output)["agents"]["gastown-ft"]["args"][2] == "http://h:1/v1"
    written = runner.invoke(app, ["agent", "preset", "--write", "--town", str(tmp_path), "--name", "gft"])
    assert written.exit_code == 0, written.output
    data = json.loads((tmp_path / "settings" / "agents.json").read_text())
    assert data["agents"]["gft"]["name"] == "gft"
    assert "gt sling <bead> <rig> --agent gft" in written.output
