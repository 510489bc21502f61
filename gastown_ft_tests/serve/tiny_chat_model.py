"""A tiny chat model for the serving tests, built here in a few seconds (no merge code, no hub).

A 2-layer LLaMA with the project's own tokenizer and chat template, trained until it has memorized
two conversations: asked for the open beads (with the Bash tool offered) it calls the tool; asked who
it is (no tools) it answers in words. That gives the tests a real tool call and a real text reply.
"""

from __future__ import annotations

import json
from pathlib import Path

from gastown_ft.training.chat_format import EOS, TURN_END, canonical_tools, render

# Bash as agents declare it, with a short schema: the tiny model learns it in fewer steps.
SMALL_BASH_TOOL = {
    "type": "function",
    "function": {
        "name": "Bash",
        "description": "Run a shell command.",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
    },
}
TOOL_QUESTION = "List the open beads of this rig."
TOOL_COMMAND = "bd list --status open"
TEXT_QUESTION = "Who are you?"
TEXT_ANSWER = "I am the Witness of this rig; I watch the polecats and nudge the stuck."


def conversations() -> list[tuple[list[dict], list[dict] | None]]:
    call = {
        "id": "call_0",
        "type": "function",
        "function": {"name": "Bash", "arguments": json.dumps({"command": TOOL_COMMAND})},
    }
    return [
        (
            [
                {"role": "user", "content": TOOL_QUESTION},
                {"role": "assistant", "content": "", "tool_calls": [call]},
            ],
            [SMALL_BASH_TOOL],
        ),
        ([{"role": "user", "content": TEXT_QUESTION}, {"role": "assistant", "content": TEXT_ANSWER}], None),
    ]


def build_tiny_chat_model(out_dir: Path, *, steps: int = 150, seed: int = 0, context: int = 512) -> Path:
    """`context`: positions the model accepts (the agent tests need room for a whole Gas Town prompt;
    it was trained on short conversations only, so past them it writes noise)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from gastown_ft.training.tokenizer import train_tokenizer

    # tools rendered as the corpus stores them (keys sorted), as serve renders a request's tools
    texts = [render(m, canonical_tools(t)) for m, t in conversations()]
    tok = train_tokenizer(texts * 20, vocab_size=400, model_max_length=context)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=context,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    enc = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small gains nothing from more, and loses a lot on a busy machine
    try:
        model.train()
        for _ in range(steps):
            model(**enc, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id,
        eos_token_id=[tok.convert_tokens_to_ids(TURN_END), tok.convert_tokens_to_ids(EOS)],
        pad_token_id=tok.pad_token_id,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir
