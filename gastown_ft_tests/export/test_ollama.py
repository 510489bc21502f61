"""The Ollama Modelfile: its TEMPLATE must render exactly what the training chat template renders.

Neither Ollama nor Go is available here, so the test carries a small Go text/template interpreter
(only the constructs the TEMPLATE uses; anything else raises) and feeds it what Ollama feeds a
template: `.System` (every system message joined), `.Messages` (consecutive same-role messages
merged), `.Tools`, with tool-call arguments parsed into objects. A change to either template that
makes them disagree fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from gastown_ft.corpus.examples import (
    BASH_TOOL,
    assistant,
    make_example,
    tool_call,
    tool_result,
    user,
)
from gastown_ft.corpus.splits import example_from_record, example_to_record
from gastown_ft.errors import GastownFTError
from gastown_ft.export.ollama import (
    STOP_WORDS,
    context_length,
    ollama_template,
    render_modelfile,
    write_modelfile,
)
from gastown_ft.training.chat_format import SPECIAL_TOKENS, TURN_END, render, render_segments

# --- a minimal Go text/template interpreter ----------------------------------------------------------

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(
    r'\s*(\(|\)|"(?:[^"\\]|\\.)*"|\$[A-Za-z_]*(?:\.[A-Za-z_]+)*|\.[A-Za-z_.]*|:=|,|-?\d+|[A-Za-z_]+)'
)


def _parse(template: str) -> list:
    """Nodes: str (text), ("out", expr), ("set", name, expr), ("if", expr, then, else),
    ("range", (key, value), expr, body)."""
    pieces: list = []
    pos = 0
    for m in _ACTION.finditer(template):
        text = template[pos : m.start()]
        if m.group(1):
            text = text.rstrip()
        if pieces and isinstance(pieces[-1], tuple) and pieces[-1][0] == "trim":
            text = text.lstrip()
            pieces.pop()
        pieces.append(text)
        pieces.append(("action", m.group(2).strip()))
        if m.group(3):
            pieces.append(("trim",))
        pos = m.end()
    tail = template[pos:]
    if pieces and pieces[-1] == ("trim",):
        pieces.pop()
        tail = tail.lstrip()
    pieces.append(tail)

    def block(i: int, stop: tuple[str, ...]) -> tuple[list, int, str]:
        nodes: list = []
        while i < len(pieces):
            p = pieces[i]
            i += 1
            if isinstance(p, str):
                if p:
                    nodes.append(p)
                continue
            src = p[1]
            word = src.split(None, 1)[0] if src else ""
            if word in stop:
                return nodes, i, word
            if word == "if":
                then, i, ended = block(i, ("else", "end"))
                other: list = []
                if ended == "else":
                    other, i, _ = block(i, ("end",))
                nodes.append(("if", _expr(src[2:]), then, other))
            elif word == "range":
                m = re.fullmatch(r"range\s+(?:(\$\w*)\s*,\s*(\$\w*)\s*:=\s*)?(.+)", src, re.S)
                assert m, f"unsupported range: {src}"
                body, i, _ = block(i, ("end",))
                nodes.append(("range", (m.group(1), m.group(2)), _expr(m.group(3)), body))
            elif re.match(r"\$\w+\s*:=", src):
                name, rhs = src.split(":=", 1)
                nodes.append(("set", name.strip(), _expr(rhs)))
            elif word.startswith("/*"):
                continue
            else:
                nodes.append(("out", _expr(src)))
        assert not stop, f"missing {{{{ end }}}} (wanted one of {stop})"
        return nodes, i, ""

    nodes, _, _ = block(0, ())
    return nodes


def _expr(src: str):
    tokens = _TOKEN.findall(src)
    assert "".join(tokens).replace(" ", "") == src.replace(" ", "").replace("\n", ""), f"unparsed: {src!r}"
    pos = 0

    def command(closing: str | None):
        nonlocal pos
        args = []
        while pos < len(tokens) and tokens[pos] != closing:
            t = tokens[pos]
            pos += 1
            if t == "(":
                args.append(command(")"))
                pos += 1
            elif t.startswith('"') or t.lstrip("-").isdigit():
                args.append(("lit", json.loads(t)))
            elif t.startswith(".") or t.startswith("$"):
                args.append(("path", t))
            else:
                args.append(("fn", t))
        if args and args[0][0] == "fn":
            return ("call", args[0][1], args[1:])
        assert len(args) == 1, f"unsupported pipeline: {src!r}"
        return args[0]

    return command(None)


def _truth(v: Any) -> bool:
    return bool(v)  # Go: false, 0, nil and empty strings/slices/maps are false; so are Python's


def _to_text(v: Any) -> str:
    if v is None:
        return "<no value>"  # what Go prints for a missing value: a template bug shows in the output
    if isinstance(v, bool):
        return "true" if v else "false"
    assert isinstance(v, str | int), f"would print a Go struct/slice: {v!r}"
    return str(v)


def _lookup(path: str, dot: Any, scope: dict[str, Any]) -> Any:
    if path.startswith("$"):
        name, _, rest = path.partition(".")
        value = scope[name]
    else:
        value, rest = dot, path[1:]
    for field in [f for f in rest.split(".") if f]:
        value = value.get(field) if isinstance(value, dict) else None
    return value


def execute(template: str, data: dict[str, Any], json_fn) -> str:
    funcs = {
        "eq": lambda a, *b: any(a == x for x in b),
        "ne": lambda a, b: a != b,
        "not": lambda a: not _truth(a),
        "and": lambda *a: next((x for x in a if not _truth(x)), a[-1]),
        "or": lambda *a: next((x for x in a if _truth(x)), a[-1]),
        "len": len,
        "slice": lambda seq, i: seq[i:],
        "json": json_fn,
    }

    def value(e, dot, scope):
        kind = e[0]
        if kind == "lit":
            return e[1]
        if kind == "path":
            return _lookup(e[1], dot, scope)
        if kind == "call":
            return funcs[e[1]](*(value(a, dot, scope) for a in e[2]))
        raise AssertionError(f"unsupported expression {e!r}")

    out: list[str] = []

    def run(nodes, dot, scope):
        for n in nodes:
            if isinstance(n, str):
                out.append(n)
            elif n[0] == "out":
                out.append(_to_text(value(n[1], dot, scope)))
            elif n[0] == "set":
                scope[n[1]] = value(n[2], dot, scope)
            elif n[0] == "if":
                run(n[2] if _truth(value(n[1], dot, scope)) else n[3], dot, dict(scope))
            elif n[0] == "range":
                (key, val), seq = n[1], value(n[2], dot, scope)
                for i, item in enumerate(seq or []):
                    inner = dict(scope)
                    if key:
                        inner[key] = i
                    if val:
                        inner[val] = item
                    run(n[3], item, inner)

    run(_parse(template), data, {"$": data})
    return "".join(out)


def ollama_values(messages: list[dict], tools: list[dict] | None) -> dict[str, Any]:
    """What Ollama hands a chat template (template.Execute after `collate`)."""
    collated: list[dict] = []
    for m in messages:
        msg = {
            "Role": m["role"],
            "Content": m.get("content") or "",
            "ToolCalls": [
                {
                    "Function": {
                        "Name": c["function"]["name"],
                        "Arguments": json.loads(c["function"]["arguments"]),
                    }
                }
                for c in m.get("tool_calls") or []
            ],
        }
        if collated and collated[-1]["Role"] == msg["Role"] and msg["Role"] != "tool":
            collated[-1]["Content"] += "\n\n" + msg["Content"]
        else:
            collated.append(msg)
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return {"System": system, "Messages": collated, "Tools": tools or [], "Response": ""}


def python_json(v: Any) -> str:
    """`json` as the training template's `tojson` writes it, to compare byte for byte."""
    return json.dumps(v, ensure_ascii=False)


def go_json(v: Any) -> str:
    """`json` as Ollama's Go encoding/json writes it: compact, with <, >, & escaped."""
    s = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def ollama_prompt(messages, tools=None, *, json_fn=python_json, template: str | None = None) -> str:
    return execute(template or ollama_template(), ollama_values(messages, tools), json_fn)


# --- conversations -----------------------------------------------------------------------------------

SYSTEM = "You are the mayor of a Gas Town workspace. Track all work as beads."


def _corpus_shaped(messages, tools=None):
    """An example as training reads it: through the corpus's own Arrow record and back."""
    ex = make_example(task="t", messages=messages, group_id="g", source_ids=["s"], tools=tools, system=False)
    back = example_from_record(example_to_record(ex))
    return back["messages"], back["tools"] or None


CONVERSATIONS = {
    "user only": ([user("what is ready?")], None),
    "system and user": ([{"role": "system", "content": SYSTEM}, user("list ready beads")], None),
    "tools without system": ([user("run bd ready")], [BASH_TOOL]),
    "multi-turn with tool call and result": (
        [
            {"role": "system", "content": SYSTEM},
            user("what should I work on?"),
            assistant(
                "", [tool_call("c1", "Bash", {"command": "bd ready --json", "description": "ready work"})]
            ),
            tool_result("c1", '[{"id": "gt-12", "title": "fix the hook"}]\n'),
            assistant("Work on gt-12: fix the hook."),
            user("claim it"),
        ],
        [BASH_TOOL],
    ),
    "content with two tool calls": (
        [
            {"role": "system", "content": SYSTEM},
            user("file two bugs"),
            assistant(
                "Filing both.",
                [
                    tool_call("a", "Bash", {"command": "bd create --title 'hook <stuck> & slow' --type bug"}),
                    tool_call("b", "Bash", {"command": 'bd create --title "café ünïcode" -p 1'}),
                ],
            ),
            tool_result("a", "created gt-1"),
            tool_result("b", "created gt-2"),
        ],
        [BASH_TOOL, {"type": "function", "function": {"name": "Read", "parameters": {"type": "object"}}}],
    ),
    "multi-line content": (
        [{"role": "system", "content": "line one\nline two\n"}, user("a\n\nb"), assistant("x\ny"), user("z")],
        None,
    ),
}


@pytest.mark.parametrize("name", CONVERSATIONS)
def test_template_renders_the_training_prompt_exactly(name):
    messages, tools = _corpus_shaped(*CONVERSATIONS[name])
    expected = render(messages, tools, add_generation_prompt=True)
    assert ollama_prompt(messages, tools) == expected


def test_a_final_assistant_message_is_continued_not_closed():
    """Ollama treats a final assistant message as a prefill: the model continues it."""
    messages = [{"role": "system", "content": SYSTEM}, user("close gt-3"), assistant("bd close")]
    full = render(messages)
    assert full.endswith(TURN_END + "\n")
    assert ollama_prompt(messages) == full[: -len(TURN_END + "\n")]


def test_the_comparison_catches_a_drift():
    """The interpreter is sensitive to the details the exact test relies on."""
    messages, tools = _corpus_shaped(*CONVERSATIONS["multi-turn with tool call and result"])
    expected = render(messages, tools, add_generation_prompt=True)
    for old, new in [
        ("<|im_end|>\n{{ end }}{{ end }}{{ if and", "<|im_end|>{{ end }}{{ end }}{{ if and"),
        ("{{ json . }}\n", "{{ json . }}"),
        ('"arguments": {{ json', '"arguments":{{ json'),
        ("<s>", ""),
    ]:
        drifted = ollama_template().replace(old, new)
        assert drifted != ollama_template(), old
        assert ollama_prompt(messages, tools, template=drifted) != expected, old


def test_ollama_json_differs_only_inside_json_payloads():
    """Under Ollama, JSON is Go-compact; everything around it stays identical, and every payload
    carries the same data."""
    messages, tools = _corpus_shaped(*CONVERSATIONS["content with two tool calls"])
    seen: list[Any] = []

    def marker(v):
        seen.append(v)
        return f"\x00{len(seen) - 1}\x00"

    skeleton = ollama_prompt(messages, tools, json_fn=marker)
    fill = lambda dump: re.sub("\x00(\\d+)\x00", lambda m: dump(seen[int(m.group(1))]), skeleton)  # noqa: E731
    assert fill(python_json) == render(messages, tools, add_generation_prompt=True)
    go = fill(go_json)
    assert go == ollama_prompt(messages, tools, json_fn=go_json)
    assert (
        '"arguments": {"command":"bd create --title \'hook \\u003cstuck\\u003e \\u0026 slow\' --type bug"}'
        in go
    )
    assert [json.loads(go_json(v)) for v in seen] == seen


def test_ollama_finds_the_tool_call_tag_the_model_was_trained_to_write():
    """Ollama's tool parser takes its tag from the first text inside `{{ if .ToolCalls }}`, trimmed and
    cut at the first `{` (tools/template.go parseTag); it then reads the first JSON object after it."""

    def first_text(nodes):
        for n in nodes:
            if isinstance(n, str):
                return n
            if n[0] in ("if", "range"):
                return first_text(n[2] if n[0] == "if" else n[3])
            if n[0] == "out":
                return None
        return None

    def tool_calls_if(nodes):
        for n in nodes:
            if isinstance(n, tuple) and n[0] == "if":
                cond = n[1]
                if cond == ("path", ".ToolCalls"):
                    return n
                found = tool_calls_if(n[2]) or tool_calls_if(n[3])
                if found:
                    return found
            if isinstance(n, tuple) and n[0] == "range":
                found = tool_calls_if(n[3])
                if found:
                    return found
        return None

    node = tool_calls_if(_parse(ollama_template()))
    assert node is not None
    tag = first_text(node[2]).strip().split("{")[0]
    assert tag == "<tool_call>"

    # What the model learnt to write for a tool call: the trained segment of an assistant turn.
    messages = [user("ready?"), assistant("", [tool_call("c", "Bash", {"command": "bd ready"})])]
    reply = next(text for text, trained in render_segments(messages, [BASH_TOOL]) if trained)
    after = reply[reply.index(tag) + len(tag) :]
    obj = json.JSONDecoder().raw_decode(after.lstrip())[0]
    assert obj == {"name": "Bash", "arguments": {"command": "bd ready"}}


# --- the Modelfile -----------------------------------------------------------------------------------


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """(command, value) pairs as Ollama's Modelfile parser reads them: `#` comments, `\"\"\"` blocks."""
    out = []
    rest = text
    while rest:
        rest = rest.lstrip("\n")
        if not rest:
            break
        if rest.startswith("#"):
            rest = rest.partition("\n")[2]
            continue
        command, _, rest = rest.partition(" ")
        if rest.startswith('"""'):
            value, _, rest = rest[3:].partition('"""')
            rest = rest.partition("\n")[2] if rest.startswith("\n") or not rest.strip(" ") else rest
        else:
            value, _, rest = rest.partition("\n")
        out.append((command.upper(), value))
    return out


def _model_dir(tmp_path: Path, n_positions: int) -> Path:
    d = tmp_path / "merged"
    d.mkdir()
    (d / "config.json").write_text(
        json.dumps({"model_type": "llama", "max_position_embeddings": n_positions})
    )
    return d


def test_modelfile_points_at_the_gguf_and_sets_template_stops_and_context(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "gastown.Q8_0.gguf").write_bytes(b"GGUF")
    n_ctx = context_length(_model_dir(tmp_path, 1536))
    path = write_modelfile(out, "gastown.Q8_0.gguf", num_ctx=n_ctx, system="You are a polecat.")
    assert path == out / "Modelfile"
    commands = parse_modelfile(path.read_text())
    by_name: dict[str, list[str]] = {}
    for command, value in commands:
        by_name.setdefault(command, []).append(value)

    (source,) = by_name["FROM"]
    assert (path.parent / source).resolve() == (out / "gastown.Q8_0.gguf").resolve()
    assert by_name["TEMPLATE"] == [ollama_template()]
    assert by_name["SYSTEM"] == ["You are a polecat."]
    params = [v.split(" ", 1) for v in by_name["PARAMETER"]]
    stops = [json.loads(v) for k, v in params if k == "stop"]
    assert set(stops) == {"<|im_end|>", "<|im_start|>", "</s>"}
    values = {k: v for k, v in params if k != "stop"}
    assert int(values["num_ctx"]) == 1536
    assert float(values["temperature"]) == 0.0
    assert float(values["repeat_penalty"]) == 1.0


def test_every_stop_word_is_a_special_token_and_ends_what_the_model_learnt_to_write():
    assert set(STOP_WORDS) <= set(SPECIAL_TOKENS)
    messages = [user("hi"), assistant("bd ready"), user("more"), assistant("gt hook")]
    trained = [text for text, t in render_segments(messages) if t]
    assert trained and all(any(text.endswith(s) for s in STOP_WORDS) for text in trained)


def test_template_can_leave_bos_to_the_gguf():
    messages = [user("hi")]
    with_bos = ollama_prompt(messages)
    without = ollama_prompt(messages, template=ollama_template(bos=False))
    assert with_bos == "<s>" + without
    assert "<s>" not in parse_modelfile(render_modelfile(num_ctx=64, bos_in_template=False))[1][1]


def test_template_prefix_follows_the_model():
    """SmolLM2's BOS is <|im_start|>: its training prompt has no prefix, and neither may the TEMPLATE."""
    messages = [{"role": "system", "content": SYSTEM}, user("hi")]
    smol = ollama_template(prefix="")
    assert smol == ollama_template(bos=False) and not smol.startswith("<s>")
    want = render(messages, add_generation_prompt=True, bos="")
    assert ollama_prompt(messages, template=smol) == want and want.startswith("<|im_start|>system")
    assert ollama_template(prefix="<s>") == ollama_template()
    assert ollama_template(bos=False, prefix="<s>") == smol  # bos=False: no prefix whatever is given
    commands = parse_modelfile(render_modelfile(num_ctx=64, prefix="", stop_words=[TURN_END, "<|im_start|>"]))
    assert dict(commands)["TEMPLATE"] == smol
    assert [v for k, v in commands if k == "PARAMETER" and v.startswith("stop")] == [
        'stop "<|im_end|>"',
        'stop "<|im_start|>"',
    ]
    with pytest.raises(GastownFTError, match="stop word"):
        render_modelfile(num_ctx=64, stop_words=['say "x"'])
    with pytest.raises(GastownFTError, match="template action"):
        ollama_template(prefix="{{ .System }}")


def test_modelfile_refuses_what_ollama_would_misread(tmp_path):
    with pytest.raises(GastownFTError, match="no GGUF file"):
        write_modelfile(tmp_path, num_ctx=512)
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(GastownFTError, match='"""'):
        write_modelfile(tmp_path, num_ctx=512, system='say """hi"""')
    with pytest.raises(GastownFTError, match="plain file name"):
        render_modelfile("../elsewhere/model.gguf", num_ctx=512)
    with pytest.raises(GastownFTError, match="num_ctx"):
        render_modelfile(num_ctx=0)
    with pytest.raises(GastownFTError, match="max_position_embeddings"):
        context_length(tmp_path)  # no config.json here
    assert not (tmp_path / "Modelfile").exists()
