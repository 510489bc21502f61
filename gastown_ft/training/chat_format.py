"""The one chat format, used the same way at train, eval, export and serve time.

ChatML-style turns with explicit special tokens. The Jinja template (saved with every tokenizer)
and `render_segments` (which training uses to build the label mask) produce the same text; a test
holds them together.

    <s><|im_start|>system\n{system}\n\n# Tools\n<tools>\n{tool json}\n</tools><|im_end|>\n
    <|im_start|>user\n{content}<|im_end|>\n
    <|im_start|>assistant\n{content}\n<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call><|im_end|>\n
    <|im_start|>tool\n{content}<|im_end|>\n

Loss falls on what the assistant writes: its content, its tool calls and its closing <|im_end|>
(so the model learns to stop), never on the `<|im_start|>assistant\n` header the prompt supplies.
"""

from __future__ import annotations

import json
from typing import Any

BOS = "<s>"
EOS = "</s>"
PAD = "<pad>"
UNK = "<unk>"
TURN_START = "<|im_start|>"
TURN_END = "<|im_end|>"  # end of turn: generation stops here
SPECIAL_TOKENS = (BOS, EOS, PAD, UNK, TURN_START, TURN_END)

CHAT_TEMPLATE = (
    # A model whose BOS is `<|im_start|>` (SmolLM2) starts a sequence with the first turn itself.
    "{%- if bos_token and bos_token != '<|im_start|>' -%}{{ bos_token }}{%- endif -%}"
    "{%- set sys = messages[0]['content'] if messages and messages[0]['role'] == 'system' else none -%}"
    "{%- if sys is not none or tools -%}"
    "{{ '<|im_start|>system\\n' }}{{ sys if sys is not none else '' }}"
    "{%- if tools -%}{{ '\\n\\n' if sys else '' }}{{ '# Tools\\n<tools>\\n' }}"
    "{%- for t in tools -%}{{ t | tojson }}{{ '\\n' }}{%- endfor -%}{{ '</tools>' }}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] != 'system' -%}"
    "{{ '<|im_start|>' + m['role'] + '\\n' }}{{ m['content'] or '' }}"
    "{%- for tc in m.get('tool_calls') or [] -%}"
    "{{ '\\n<tool_call>\\n{\"name\": \"' + tc['function']['name'] + '\", \"arguments\": ' "
    "+ tc['function']['arguments'] + '}\\n</tool_call>' }}"
    "{%- endfor -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def canonical_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Tool schemas with their keys sorted at every level: the form the corpus stores them in, so the
    form every model was trained on. A client's own key order ("type" before "function", "name"
    before "description") renders another text, and a small tuned model answers that with broken
    tool calls (measured on the demo model: nested `{"type": "object", "arguments": ...}`)."""
    if not tools:
        return tools
    return [json.loads(json.dumps(t, sort_keys=True, ensure_ascii=False)) for t in tools]


def _tools_block(tools: list[dict[str, Any]]) -> str:
    # Matches transformers' `tojson` filter: json.dumps(ensure_ascii=False) with default separators.
    return (
        "# Tools\n<tools>\n" + "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tools) + "</tools>"
    )


def render_segments(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    *,
    add_generation_prompt: bool = False,
    bos: str = BOS,
) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, trained) pieces; their concatenation equals the template.

    `bos` is what the template writes first: `sequence_prefix(tokenizer)` for a given model."""
    out: list[tuple[str, bool]] = [(bos, False)] if bos else []
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
    if system is not None or tools:
        body = system or ""
        if tools:
            body += ("\n\n" if system else "") + _tools_block(tools)
        out.append((f"{TURN_START}system\n{body}{TURN_END}\n", False))
    for m in messages:
        role = m["role"]
        if role == "system":
            continue
        header = f"{TURN_START}{role}\n"
        body = m.get("content") or ""
        for tc in m.get("tool_calls") or []:
            fn = tc["function"]
            body += f'\n<tool_call>\n{{"name": "{fn["name"]}", "arguments": {fn["arguments"]}}}\n</tool_call>'
        if role == "assistant":
            out += [(header, False), (body + TURN_END, True), ("\n", False)]
        else:
            out.append((header + body + TURN_END + "\n", False))
    if add_generation_prompt:
        out.append((f"{TURN_START}assistant\n", False))
    return out


def render(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    *,
    add_generation_prompt: bool = False,
    bos: str = BOS,
) -> str:
    return "".join(
        t for t, _ in render_segments(messages, tools, add_generation_prompt=add_generation_prompt, bos=bos)
    )


def sequence_prefix(tokenizer: Any) -> str:
    """What the chat template writes before the first turn for this tokenizer: its BOS token, or
    nothing when the BOS is `<|im_start|>` itself (SmolLM2), which every turn already starts with."""
    bos = getattr(tokenizer, "bos_token", None)
    return "" if not bos or bos == TURN_START else str(bos)
