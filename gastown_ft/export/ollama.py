"""The Ollama Modelfile: the GGUF, the project's chat format as an Ollama (Go) template, and stop words.

`ollama create gastown-ft -f Modelfile` in the export directory makes the model available to any
Ollama client. The TEMPLATE reproduces `gastown_ft.training.chat_format` turn for turn: the same
sequence prefix, system block, `# Tools` block, ChatML turns and `<tool_call>` blocks, and the same
generation prompt, so the model sees at serve time the text it was trained on. A test renders both
templates for the same conversations and fails on any drift.

The sequence prefix is `chat_format.sequence_prefix(tokenizer)`: `<s>` for the embedded model, nothing
for SmolLM2 (its BOS is `<|im_start|>`, which the first turn starts with anyway; a second one would be
a prompt the model never saw). `write_modelfile` reads it, and the stop words, from the GGUF itself.

Two things Ollama does its own way (see the README section "Ollama"):
- JSON inside the prompt (tool schemas, earlier tool-call arguments) is written by Ollama's `json`
  function, Go's `encoding/json`: compact (`{"command":"bd ready"}`) where training had
  `{"command": "bd ready"}`. The template language has no way around it; the model still parses it,
  and its own tool calls, which Ollama parses as JSON, are unaffected.
- Ollama joins every system message into one and merges consecutive messages of the same role;
  the training format uses only a leading system message. Conversations in the corpus's shape
  (one system message first, alternating turns) render identically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from gastown_ft.errors import GastownFTError
from gastown_ft.training.chat_format import BOS, EOS, TURN_END, TURN_START

MODELFILE_NAME = "Modelfile"

# Stop words. <|im_end|> ends every assistant turn in training; <|im_start|> stops a model that skips
# its <|im_end|> before writing a turn it must not; then the model's own EOS (</s> for the embedded
# model, in case it ends text that way). These are the embedded model's; `write_modelfile` takes the
# EOS from the GGUF (SmolLM2's is <|im_end|> itself, and </s> is plain text to it).
STOP_WORDS = (TURN_END, TURN_START, EOS)

# Ollama's chat template (Go text/template). Newlines below are literal output; the only output
# that comes from actions is message text and JSON. Notes on the less obvious parts:
# - `.System` is every system message joined; system messages in `.Messages` are skipped.
# - `$last`: the final message. A final assistant message is a prefill the model continues, so its
#   <|im_end|> is left off (transformers' continue_final_message); otherwise the template ends with
#   the generation prompt `<|im_start|>assistant\n`, exactly as `render(add_generation_prompt=True)`.
# - `{{ if .ToolCalls }}` and the text `\n<tool_call>` before `{{ "" }}`: Ollama finds its tool-call
#   tag as the first text inside an `if .ToolCalls` block, cut at the first `{`; splitting the text
#   node there makes the tag exactly `<tool_call>`, which is how it recognises the model's calls.
_TEMPLATE_BODY = (
    "{{ if or .System .Tools }}<|im_start|>system\n{{ .System }}{{ if .Tools }}{{ if .System }}\n\n{{ end }}"
    "# Tools\n<tools>\n{{ range .Tools }}{{ json . }}\n{{ end }}</tools>{{ end }}<|im_end|>\n{{ end }}"
    "{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}"
    '{{ if ne .Role "system" }}<|im_start|>{{ .Role }}\n{{ .Content }}'
    '{{ if .ToolCalls }}{{ range .ToolCalls }}\n<tool_call>{{ "" }}\n'
    '{"name": "{{ .Function.Name }}", "arguments": {{ json .Function.Arguments }}}\n</tool_call>{{ end }}{{ end }}'
    '{{ if or (ne .Role "assistant") (not $last) }}<|im_end|>\n{{ end }}{{ end }}'
    '{{ if and $last (ne .Role "assistant") }}<|im_start|>assistant\n{{ end }}{{ end }}'
)


def ollama_template(*, bos: bool = True, prefix: str | None = None) -> str:
    """The TEMPLATE text.

    prefix: what it writes before the first turn, as the training template does:
    `chat_format.sequence_prefix(tokenizer)` ("<s>" for the embedded model, "" for SmolLM2), or
    `gguf_chat_tokens(path)`'s; None: `<s>` (the embedded model's). bos=False: no prefix at all, for
    a GGUF whose tokenizer adds BOS itself (`tokenizer.ggml.add_bos_token` true; ours say false), or
    the prompt starts with two."""
    prefix = (BOS if prefix is None else prefix) if bos else ""
    if "{{" in prefix or "}}" in prefix:
        raise GastownFTError(f"the template's sequence prefix {prefix!r} would be read as a template action")
    return prefix + _TEMPLATE_BODY


def gguf_chat_tokens(gguf_path: Path | str) -> tuple[str, tuple[str, ...]] | None:
    """(sequence prefix, stop words) for the GGUF at `gguf_path`, from its tokenizer metadata; None
    when the file cannot be read as a GGUF with a token list.

    The prefix is the BOS token's text when llama.cpp does not add BOS itself and BOS is not
    `<|im_start|>` (exactly `chat_format.sequence_prefix` of the tokenizer the GGUF was written from);
    otherwise nothing. The stop words are `<|im_end|>`, `<|im_start|>` and the GGUF's EOS token."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(gguf_path))
        fields = reader.fields
        tokens = fields["tokenizer.ggml.tokens"]

        def token(key: str) -> str | None:
            field = fields.get(key)
            if field is None:
                return None
            i = int(field.contents())
            return bytes(tokens.parts[tokens.data[i]]).decode("utf-8") if 0 <= i < len(tokens.data) else None

        add_bos_field = fields.get("tokenizer.ggml.add_bos_token")
        add_bos = bool(add_bos_field.contents()) if add_bos_field is not None else False
        bos, eos = token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id")
    except (OSError, ValueError, KeyError, IndexError, UnicodeDecodeError):
        return None
    prefix = "" if add_bos or not bos or bos == TURN_START else bos
    stops = (TURN_END, TURN_START) + ((eos,) if eos and eos not in (TURN_END, TURN_START) else ())
    return prefix, stops


def _quoted(value: str, what: str) -> str:
    if '"""' in value:
        raise GastownFTError(
            f'{what} contains """, which ends a Modelfile block early',
            hint='remove the triple quote from the text (a single " is fine)',
        )
    return f'"""{value}"""'


def context_length(model_dir: Path) -> int:
    """The model's context window (`max_position_embeddings` in its config.json)."""
    config = Path(model_dir) / "config.json"
    try:
        n = json.loads(config.read_text())["max_position_embeddings"]
    except (OSError, ValueError, KeyError) as e:
        raise GastownFTError(
            f"cannot read the context length from {config}: {e}",
            hint="point at the merged model directory (it has a config.json with max_position_embeddings)",
        ) from None
    if not isinstance(n, int) or n <= 0:
        raise GastownFTError(f"{config}: max_position_embeddings is {n!r}, not a positive integer")
    return n


def render_modelfile(
    gguf_name: str = "model.gguf",
    *,
    num_ctx: int,
    temperature: float = 0.0,
    num_predict: int | None = 512,
    system: str | None = None,
    bos_in_template: bool = True,
    prefix: str | None = None,
    stop_words: Sequence[str] | None = None,
) -> str:
    """The Modelfile text (see `write_modelfile`). prefix: see `ollama_template`; stop_words: default
    `STOP_WORDS` (the embedded model's)."""
    if not gguf_name or Path(gguf_name).name != gguf_name or any(c in gguf_name for c in "\"'\n\r "):
        raise GastownFTError(
            f"GGUF file name {gguf_name!r} must be a plain file name next to the Modelfile",
            hint="pass just the file name, e.g. model.gguf, and write the Modelfile into the same directory",
        )
    if num_ctx <= 0:
        raise GastownFTError(f"num_ctx must be positive, got {num_ctx}")
    if not 0 <= temperature <= 2:
        raise GastownFTError(f"temperature must be between 0 and 2, got {temperature}")
    lines = [
        "# Gas Town fine-tuned model (gastown-ft). In this directory: ollama create gastown-ft -f Modelfile",
        f"FROM ./{gguf_name}",
        f"TEMPLATE {_quoted(ollama_template(bos=bos_in_template, prefix=prefix), 'the template')}",
    ]
    if system:
        lines.append(f"SYSTEM {_quoted(system, 'the system prompt')}")
    for stop in STOP_WORDS if stop_words is None else stop_words:
        if not stop or any(c in stop for c in '"\\\n\r'):
            raise GastownFTError(f"stop word {stop!r} cannot be written as a Modelfile PARAMETER")
        lines.append(f'PARAMETER stop "{stop}"')
    # Greedy and without Ollama's default repeat penalty (1.1): the evaluation measured greedy
    # decoding, agents want the same command for the same prompt, and commands legitimately repeat
    # tokens (`--`, bead ids). Clients can still pass their own options per request.
    lines += [
        f"PARAMETER temperature {temperature:g}",
        "PARAMETER repeat_penalty 1",
        f"PARAMETER num_ctx {num_ctx}",
    ]
    if num_predict is not None:
        lines.append(f"PARAMETER num_predict {num_predict}")
    return "\n".join(lines) + "\n"


def write_modelfile(
    out_dir: Path,
    gguf_name: str = "model.gguf",
    *,
    num_ctx: int,
    temperature: float = 0.0,
    num_predict: int | None = 512,
    system: str | None = None,
    bos_in_template: bool = True,
    prefix: str | None = None,
    stop_words: Sequence[str] | None = None,
) -> Path:
    """Write `out_dir/Modelfile` for the GGUF `out_dir/gguf_name` and return its path.

    prefix / stop_words: by default read from the GGUF (`gguf_chat_tokens`), so the template starts
    the way the training template did for that model (`<s>` for the embedded model, nothing for
    SmolLM2); for a file that is not a readable GGUF, the embedded model's (`<s>`, `STOP_WORDS`).
    bos_in_template=False writes no prefix whatever the GGUF says.

    num_ctx: the context window, normally `context_length(merged_model_dir)` (Ollama's default of
    2048 or 4096 would either waste memory or cut prompts the model can read). num_predict caps a
    reply (the default matches `gastown-ft serve`'s max_tokens), so a small model that fails to stop
    cannot run on. system: an optional default system prompt, used when a request brings none."""
    out_dir = Path(out_dir)
    if not (out_dir / gguf_name).is_file():
        raise GastownFTError(
            f"no GGUF file at {out_dir / gguf_name}; the Modelfile would point at nothing",
            hint="export the GGUF into this directory first",
        )
    if prefix is None or stop_words is None:
        found = gguf_chat_tokens(out_dir / gguf_name)
        if found is not None:
            prefix = found[0] if prefix is None else prefix
            stop_words = found[1] if stop_words is None else stop_words
    text = render_modelfile(
        gguf_name,
        num_ctx=num_ctx,
        temperature=temperature,
        num_predict=num_predict,
        system=system,
        bos_in_template=bos_in_template,
        prefix=prefix,
        stop_words=stop_words,
    )
    path = out_dir / MODELFILE_NAME
    path.write_text(text, encoding="utf-8")
    return path
