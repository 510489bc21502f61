"""The model card (README.md beside the exported model): what it is, how to run it, how it was made.

A Hugging Face model card (`huggingface_hub.ModelCard`): YAML metadata the Hub and tools read (base
model, tags, the tuned model's evaluation as `model-index`) and a Markdown body for people: summary,
usage (transformers, llama.cpp, Ollama, `gastown-ft serve`), training data, training configuration,
base-vs-tuned evaluation, intended use, limitations and provenance.

Inputs are plain dicts from the pipeline's artifacts; every key is optional except where said, and a
missing section is written as "not recorded" rather than left out, so a reader sees what is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from gastown_ft.errors import GastownFTError

CARD_NAME = "README.md"
BASE_TAGS = ["gastown", "lora", "peft", "chatml", "tool-use"]
# The card's dataset "id" in model-index: the corpus is the town's own and is not on the Hub.
CORPUS_DATASET_TYPE = "gastown-town-corpus"


def _cell(value: Any) -> str:
    """A value for a Markdown table cell: numbers rounded, no pipes or newlines to break the row."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, list | tuple):
        value = ", ".join(str(v) for v in value)
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) or math.isinf(value) else float(value)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out += _flatten(value, name + ".")
        else:
            out.append((name, value))
    return out


def _key_value_table(d: Mapping[str, Any] | None, header: tuple[str, str] = ("Setting", "Value")) -> str:
    rows = _flatten(d or {})
    if not rows:
        return "_Not recorded._\n"
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    lines += [f"| `{_cell(k)}` | {_cell(v)} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def _metrics(eval_results: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    metrics = (eval_results or {}).get("metrics") or {}
    if not isinstance(metrics, Mapping):
        raise GastownFTError(
            "evaluation metrics must be a mapping of metric name to {'base': ..., 'tuned': ...}",
            hint="pass eval_results={'metrics': {'exact_command': {'base': 0.1, 'tuned': 0.5}}, ...}",
        )
    out = {}
    for name, row in metrics.items():
        # A bare number is the tuned model's value with no base to compare.
        out[str(name)] = row if isinstance(row, Mapping) else {"tuned": row}
    return out


def eval_table(eval_results: Mapping[str, Any] | None) -> str:
    """Base vs tuned, one metric a row, with the change."""
    metrics = _metrics(eval_results)
    if not metrics:
        return "_No evaluation was recorded for this model._\n"
    lines = ["| Metric | Base model | Tuned model | Change |", "| --- | ---: | ---: | ---: |"]
    for name, row in metrics.items():
        base, tuned = row.get("base"), row.get("tuned")
        b, t = _number(base), _number(tuned)
        change = f"{t - b:+.4g}" if b is not None and t is not None else "n/a"
        lines.append(f"| {_cell(name)} | {_cell(base)} | {_cell(tuned)} | {change} |")
    return "\n".join(lines) + "\n"


def _eval_index(model_name: str, corpus: Mapping[str, Any], eval_results: Mapping[str, Any] | None):
    """The tuned model's numeric results as `EvalResult`s (the card's `model-index`)."""
    version = str(corpus.get("version") or "unknown")
    split = str((eval_results or {}).get("split") or "test")
    out = []
    for name, row in _metrics(eval_results).items():
        value = _number(row.get("tuned"))
        if value is None:
            continue
        out.append(
            EvalResult(
                task_type="text-generation",
                dataset_type=CORPUS_DATASET_TYPE,
                dataset_name=f"Gas Town corpus {version[:12]}",
                dataset_split=split,
                dataset_revision=version,
                metric_type=name,
                metric_name=name.replace("_", " "),
                metric_value=value,
            )
        )
    return out or None


def preset_record(base_model: Mapping[str, Any]) -> dict[str, Any] | None:
    """What is known of a preset base model (source "preset"): model, hub_id, license, source package
    and GGUF; None for any other base.

    From the converted directory's record (`presets.preset_info(path)`) when the path is given and
    still there, else from the preset table by name; `hub_id` / `license` given in `base_model`
    itself win."""
    if base_model.get("source") != "preset":
        return None
    from gastown_ft.training.presets import PRESETS, preset_info

    record: dict[str, Any] = {}
    if base_model.get("path"):
        record = dict(preset_info(Path(str(base_model["path"]))) or {})
    if not record.get("hub_id"):
        name = str(base_model.get("name") or "").strip().lower()
        known = next((p for p in PRESETS.values() if name in (p.name, p.display.lower())), None)
        if known is not None:
            record = {
                "preset": known.name,
                "model": known.display,
                "hub_id": known.hub_id,
                "license": known.license,
                "source_package": known.package,
                "source_gguf": known.gguf,
                **record,
            }
    for key in ("hub_id", "license"):
        if base_model.get(key):
            record[key] = base_model[key]
    return record or None


def _hub_base(base_model: Mapping[str, Any]) -> str | None:
    """The Hub id for the metadata's `base_model` (the Hub accepts only Hub ids there)."""
    if base_model.get("source") == "hub":
        return base_model.get("name")
    return (preset_record(base_model) or {}).get("hub_id")


def _base_description(base_model: Mapping[str, Any]) -> str:
    name, source = base_model.get("name"), base_model.get("source")
    if source == "embedded":
        return "the small embedded base model that gastown-ft trains from scratch on the town's own text"
    if source == "preset":
        record = preset_record(base_model) or {}
        model, hub_id = record.get("model") or name, record.get("hub_id")
        if not hub_id:
            return f"the preset base model `{model}`" if model else "an unrecorded preset base model"
        return f"[{model or hub_id}](https://huggingface.co/{hub_id})"
    if source == "hub":
        rev = base_model.get("revision")
        return f"[`{name}`](https://huggingface.co/{name})" + (
            f" (revision `{str(rev)[:12]}`)" if rev else ""
        )
    return f"the local base model `{name}`" if name else "an unrecorded base model"


def _summary(model_name, base_model, corpus, eval_results) -> str:
    version = corpus.get("version")
    total = sum(n for n in (corpus.get("splits") or {}).values() if isinstance(n, int))
    text = (
        f"`{model_name}` is {_base_description(base_model)}, fine-tuned with LoRA on a Gas Town "
        "workspace's own artifacts (formulas, beads, conventions and agent transcripts), so that it "
        "uses the town's `gt` and `bd` command lines and follows its conventions. The LoRA adapter is "
        "merged into the base weights; the export also carries a GGUF file for llama.cpp and Ollama.\n\n"
        f"Corpus version `{version or 'not recorded'}`" + (f", {total:,} examples." if total else ".")
    )
    passed = (eval_results or {}).get("passed")
    if passed is True:
        text += " The tuned model passed the evaluation gate (see Evaluation)."
    elif passed is False:
        text += " **The tuned model did not pass the evaluation gate** (see Evaluation)."
    return text + "\n"


def _usage(model_name: str, gguf_file: str | None, modelfile: str | None, serve_url: str) -> str:
    parts = [
        "All files are in this directory; nothing is downloaded. Replies are greedy by default: the "
        "evaluation measured greedy decoding.\n",
        "### transformers\n",
        "```python\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        'path = "."  # this directory\n'
        "tok = AutoTokenizer.from_pretrained(path)\n"
        "model = AutoModelForCausalLM.from_pretrained(path)\n"
        'messages = [{"role": "user", "content": "What should I work on next?"}]\n'
        "inputs = tok.apply_chat_template(\n"
        '    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True\n'
        ")\n"
        "out = model.generate(\n"
        '    **inputs, max_new_tokens=128, do_sample=False, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>")\n'
        ")\n"
        'print(tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))\n'
        "```\n",
        "The tokenizer carries the chat template the model was trained with (ChatML turns; tools in "
        "the system turn; tool calls as `<tool_call>` JSON). A reply ends with `<|im_end|>`.\n",
    ]
    if gguf_file:
        parts += [
            "### llama.cpp\n",
            "```bash\n"
            f"llama-server -m {gguf_file} --jinja      # OpenAI-compatible API on http://127.0.0.1:8080/v1\n"
            f"llama-cli -m {gguf_file} --jinja -cnv    # interactive chat\n"
            "```\n",
            "`--jinja` makes llama.cpp use the chat template stored in the GGUF (the training template).\n",
        ]
    if gguf_file and modelfile:
        parts += [
            "### Ollama\n",
            "```bash\n"
            f"ollama create {model_name} -f {modelfile}   # in this directory\n"
            f'ollama run {model_name} "What should I work on next?"\n'
            "```\n",
            f"The `{modelfile}` sets the training chat template, the stop words and greedy decoding. "
            "Ollama writes JSON inside prompts (tool schemas, earlier tool calls) compactly, where "
            'training had `": "` spacing; the model\'s own tool calls are unaffected.\n',
        ]
    parts += [
        "### gastown-ft serve\n",
        "```bash\ngastown-ft serve\n```\n",
        f"serves the promoted model as an OpenAI-compatible API at `{serve_url}` under the model id "
        f"`{model_name}`, for Gas Town agents and any OpenAI client.\n",
    ]
    return "\n".join(parts)


def _counts_table(counts: Mapping[str, Any] | None, what: str) -> str:
    if not counts:
        return f"_{what}: not recorded._\n"
    lines = [f"| {what} | Examples |", "| --- | ---: |"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in counts.items()]
    return "\n".join(lines) + "\n"


def _training_data(corpus: Mapping[str, Any]) -> str:
    scrubbing = corpus.get("scrubbing")
    text = (
        f"Corpus version `{corpus.get('version') or 'not recorded'}` (a hash of the example ids in every "
        "split: the same version means the same examples). Built by gastown-ft from one Gas Town "
        "workspace: formulas, beads, conventions and agent session transcripts, turned into chat "
        "examples. The splits are by group (every example from one session, formula or bead lands in "
        "the same split), so the test split holds work the model did not see.\n\n"
        "Secrets and personal data were scrubbed before anything was stored. The corpus itself is the "
        "town's own data and is not published with the model.\n\n"
    )
    if scrubbing:
        text += "Scrubbing:\n\n" + (
            _key_value_table(scrubbing, ("Item", "Value"))
            if isinstance(scrubbing, Mapping)
            else f"{scrubbing}\n"
        )
        text += "\n"
    text += _counts_table(corpus.get("splits"), "Split") + "\n" + _counts_table(corpus.get("tasks"), "Task")
    return text


def _quantizations(rows: Sequence[Mapping[str, Any]] | None) -> str:
    """The GGUF files side by side: size and held-out loss, and what each quantization costs."""
    if not rows:
        return ""
    ref = rows[0].get("loss")
    lines = [
        "\n### GGUF quantizations\n",
        "Held-out loss (mean over the assistant's tokens of test examples, as training encodes them), "
        "scored by llama.cpp on each file; the cost of a quantization is its loss above the first row's.\n",
        "| File | Quantization | Size (MiB) | Held-out loss | Perplexity | Loss vs first |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        loss = r.get("loss")
        delta = f"{loss - ref:+.4f}" if isinstance(loss, float) and isinstance(ref, float) else "n/a"
        lines.append(
            f"| `{r.get('file')}` | {r.get('quant')} | {r.get('bytes', 0) / 2**20:.1f} | "
            + (f"{loss:.4f} | {r.get('perplexity'):.3f}" if isinstance(loss, float) else "n/a | n/a")
            + f" | {delta} |"
        )
    tokens, examples = rows[0].get("tokens"), rows[0].get("examples")
    if tokens:
        lines.append(f"\nScored on {tokens} tokens of {examples} test examples.\n")
    else:
        lines.append("\nNot scored (no test examples, or llama.cpp was not available at export).\n")
    lines.append("`gastown-ft serve --quantization q4_k_m` serves a quantized copy (through llama.cpp).\n")
    return "\n".join(lines)


def _evaluation(eval_results: Mapping[str, Any] | None) -> str:
    er = eval_results or {}
    head = []
    if er.get("split") or er.get("examples"):
        head.append(
            f"Measured on the `{er.get('split') or 'test'}` split"
            + (f" ({_cell(er['examples'])} examples)" if er.get("examples") else "")
            + ", the base model and the tuned model on the same prompts."
        )
    passed = er.get("passed")
    if passed is not None:
        gate = f" (gate: {_cell(er['gate'])})" if er.get("gate") else ""
        head.append(f"Evaluation gate: **{'passed' if passed else 'failed'}**{gate}.")
    return ("\n\n".join(head) + "\n\n" if head else "") + eval_table(eval_results)


def _base_license(base_model: Mapping[str, Any]) -> str:
    """A paragraph on where a preset base's weights came from and its license; "" for other bases."""
    record = preset_record(base_model)
    if not record:
        return ""
    model = record.get("model") or base_model.get("name") or "the base model"
    parts = []
    if record.get("source_gguf") and record.get("source_package"):
        parts.append(
            f"The base weights are {model} as the `{record['source_package']}` package ships it "
            f"(`{record['source_gguf']}`), converted offline to a Hugging Face model"
            + (f" (preset `{record['preset']}`)" if record.get("preset") else "")
            + "; nothing was downloaded."
        )
    if record.get("license"):
        parts.append(
            f"{model} is released under the {_license_name(record['license'])} license; this model, "
            "derived from its weights, is distributed under the same license."
        )
    return " ".join(parts) + "\n\n" if parts else ""


def _license_name(spdx: str) -> str:
    return {"apache-2.0": "Apache-2.0", "mit": "MIT"}.get(str(spdx).lower(), str(spdx))


def _limitations(base_model: Mapping[str, Any]) -> str:
    items = [
        "It learnt from one Gas Town workspace: its rigs, bead ids, roles and conventions. Elsewhere it "
        "will suggest this town's names and habits.",
        "Commands it writes can be wrong or out of date; agents and people should "
        "check a command (gastown-ft's evaluation checks them against the real `gt`/`bd` grammar) "
        "before it changes anything. Not for decisions without review.",
        "The evaluation uses held-out work from the same town, so it is optimistic about new kinds of work.",
        "The corpus was scrubbed of secrets and personal data, but scrubbing is pattern-based: keep the "
        "model as private as the town's own repositories.",
    ]
    if base_model.get("source") == "embedded":
        items.insert(
            0,
            "**The base is the tiny embedded model** gastown-ft builds from scratch: it shows the whole "
            "pipeline working end to end, but it is a demonstration, not a useful assistant. Set "
            "`[training] base_model` to a real instruction-tuned model for real use.",
        )
    record = preset_record(base_model)
    if record and record.get("source_gguf"):
        items.insert(
            0,
            f"The base weights come from `{record['source_gguf']}`, a quantized copy of "
            f"{record.get('model') or 'the base model'}, dequantized: close to, but not exactly, the "
            "original release weights.",
        )
    if record and isinstance(record.get("parameters"), int):
        items.insert(
            0,
            f"{record.get('model') or 'The base model'} is a small model "
            f"({record['parameters'] / 1e6:.0f}M parameters): it follows short instructions, but its "
            "general knowledge and reasoning are limited; fine-tuning teaches it the town's commands, "
            "not more than that.",
        )
    return "".join(f"- {item}\n" for item in items)


INTENDED_USE = (
    "Helping this Gas Town workspace's agents and operators: choosing and writing `gt` and `bd` "
    "commands, filing and updating beads, following the town's formulas and conventions, and "
    "answering questions about the town's own work. Run locally next to the town (transformers, "
    "llama.cpp, Ollama or `gastown-ft serve`).\n\n"
    "Out of scope: general-purpose chat, other codebases or towns, and acting without review on "
    "anything that cannot be undone.\n"
)


def build_model_card(
    *,
    base_model: Mapping[str, Any],
    corpus: Mapping[str, Any],
    training_config: Mapping[str, Any] | None,
    eval_results: Mapping[str, Any] | None,
    provenance: Mapping[str, Any] | None,
    model_name: str = "gastown-ft",
    license: str | None = None,
    gguf_file: str | None = "model.gguf",
    modelfile: str | None = "Modelfile",
    serve_url: str = "http://127.0.0.1:8000/v1",
    quantizations: Sequence[Mapping[str, Any]] | None = None,
) -> ModelCard:
    """The card in memory (see `write_model_card`)."""
    for what, value in (("base_model", base_model), ("corpus", corpus)):
        if not isinstance(value, Mapping):
            raise GastownFTError(f"model card: {what} must be a mapping, got {type(value).__name__}")
    if not model_name or not model_name.strip():
        raise GastownFTError("model card: model_name is empty", hint="set [serve] model_name")
    hub_base = _hub_base(base_model)
    if license is None:  # a preset's own license carries over to the fine-tuned weights
        license = (preset_record(base_model) or {}).get("license")
    tags = list(BASE_TAGS) + (["gguf"] if gguf_file else []) + (["ollama"] if gguf_file and modelfile else [])
    extra: dict[str, Any] = {"base_model_relation": "finetune"} if hub_base else {}
    data = ModelCardData(
        model_name=model_name,
        base_model=hub_base,
        license=license,
        library_name="transformers",
        pipeline_tag="text-generation",
        language=["en"],
        tags=tags,
        eval_results=_eval_index(model_name, corpus, eval_results),
        **extra,
    )
    sections = [
        f"# {model_name}\n\n" + _summary(model_name, base_model, corpus, eval_results),
        "## How to use\n\n" + _usage(model_name, gguf_file, modelfile, serve_url),
        "## Training data\n\n" + _training_data(corpus),
        "## Training\n\n"
        f"LoRA fine-tuning of {_base_description(base_model)}; the adapter is merged into the base "
        "weights for export. Loss falls only on what the assistant writes (its text, its tool calls "
        "and the closing `<|im_end|>`).\n\n" + _base_license(base_model) + _key_value_table(training_config),
        "## Evaluation\n\n" + _evaluation(eval_results) + _quantizations(quantizations),
        "## Intended use\n\n" + INTENDED_USE,
        "## Limitations\n\n" + _limitations(base_model),
        "## Provenance\n\n"
        + _key_value_table(
            {"base_model": _base_provenance(base_model), **dict(provenance or {})}, ("Item", "Value")
        ),
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(sections))


def _base_provenance(base_model: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base_model)
    record = preset_record(base_model) or {}
    for key in ("hub_id", "license", "source_package", "source_gguf"):
        if record.get(key) and key not in out:
            out[key] = record[key]
    return out


def write_model_card(
    out_dir: Path,
    *,
    base_model: Mapping[str, Any],
    corpus: Mapping[str, Any],
    training_config: Mapping[str, Any] | None,
    eval_results: Mapping[str, Any] | None,
    provenance: Mapping[str, Any] | None,
    model_name: str = "gastown-ft",
    license: str | None = None,
    gguf_file: str | None = "model.gguf",
    modelfile: str | None = "Modelfile",
    serve_url: str = "http://127.0.0.1:8000/v1",
    quantizations: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """Write `out_dir/README.md` and return its path.

    base_model: name, source ("embedded" | "preset" | "local" | "hub"), revision, fingerprint, path
    (only a Hub model, or a preset's Hub id, goes into the metadata's `base_model`: the Hub accepts only
    Hub ids there). A preset's record (`preset_record`) names it, links it and gives the license when
    `license` is None.
    corpus: version, splits {split: examples}, tasks {task: examples}, optional scrubbing summary.
    training_config: the [training] settings as saved with the adapter.
    eval_results: metrics {name: {"base": x, "tuned": y}}, split, examples, passed, gate (a one-line
    description of the gate); None when the model was not evaluated.
    provenance: run id, plan fingerprint, project version and commit, anything else worth keeping.
    gguf_file / modelfile: the names of the exported GGUF and Modelfile, or None when not exported.
    quantizations: one row per GGUF file measured (`gguf_file` first, then its quantized copies):
    quant, file, bytes, and the held-out loss / perplexity / tokens llama.cpp scored on it."""
    card = build_model_card(
        base_model=base_model,
        corpus=corpus,
        training_config=training_config,
        eval_results=eval_results,
        provenance=provenance,
        model_name=model_name,
        license=license,
        gguf_file=gguf_file,
        quantizations=quantizations,
        modelfile=modelfile,
        serve_url=serve_url,
    )
    path = Path(out_dir) / CARD_NAME
    card.save(path)
    return path
