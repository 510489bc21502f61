"""The evaluation's greedy generation, through llama.cpp over GGUF files.

The same contract as `evaluation.generate.generate` (its `Prompt` in, its `Generation` out, in the
order given): prompts rendered with the project's chat template and tokenized by the Hugging Face
tokenizer beside the weights (never by llama.cpp, so both engines read the same ids), the end of a
too-long prompt kept, greedy decoding that stops at `<|im_end|>` / `</s>` / EOS, each output cut to its
own budget. Base and tuned are two files (`GGUFModel` each): the base model's GGUF and the merged
tuned model's; `gguf_cache.gguf_pair` makes both from a base directory and a LoRA adapter.

llama.cpp runs one prompt at a time (no padding, no batch), each at full speed; `seconds` is each
prompt's own wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gastown_ft.evaluation.generate import (
    Generation,
    Prompt,
    parse_tool_calls,
    render_prompt,
    stop_token_ids,
)


@dataclass
class GGUFModel:
    llm: Any  # llama_cpp.Llama
    tokenizer: Any  # the Hugging Face tokenizer the model was exported with
    path: Path
    stop_ids: list[int]
    context: int

    def close(self) -> None:
        from gastown_ft.llamacpp.runtime import close

        close(self.llm)


def load_gguf_model(
    gguf_path: Path | str, tokenizer: Path | str | Any, *, threads: int | None = None
) -> GGUFModel:
    """The GGUF at `gguf_path` with the tokenizer of the model it was exported from (that model's
    directory, or the tokenizer itself)."""
    from transformers import AutoTokenizer

    from gastown_ft.llamacpp.runtime import open_gguf

    tok = AutoTokenizer.from_pretrained(str(tokenizer)) if isinstance(tokenizer, (str, Path)) else tokenizer
    llm = open_gguf(gguf_path, threads=threads)
    return GGUFModel(llm, tok, Path(gguf_path), stop_token_ids(tok), int(llm.n_ctx()))


def generate(
    model: GGUFModel,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int,
    progress: Callable[[int, int], None] | None = None,
    reuse_prefix: bool = True,
) -> list[Generation]:
    """Greedy completions of `prompts`, in the order given (see the module doc).

    `reuse_prefix`: read a shared opening once (the logits can differ from a whole read in the last
    bits, so a near tie may break the other way; off reads every prompt whole)."""
    from gastown_ft.llamacpp.runtime import tokens

    tok = model.tokenizer
    stops = set(model.stop_ids)
    full = [tok(render_prompt(p, tok), add_special_tokens=False, verbose=False)["input_ids"] for p in prompts]
    out: list[Generation | None] = [None] * len(prompts)
    # In token order: each prompt reuses the KV cache of the opening (system prompt, tools) it shares
    # with the one before, so that opening is read once instead of once per prompt.
    for k, i in enumerate(sorted(range(len(prompts)), key=lambda i: full[i]), start=1):
        p = prompts[i]
        budget = min(max_new_tokens, p.max_new_tokens or max_new_tokens)
        room = max(16, model.context - budget)
        ids = full[i][-room:]
        started = time.perf_counter()
        new: list[int] = []
        stopped = False
        for t in tokens(model.llm, ids, max_new_tokens=budget, reuse_prefix=reuse_prefix):
            if t in stops:
                stopped = True
                break
            new.append(t)
        text = tok.decode(new, skip_special_tokens=False)
        out[i] = Generation(
            text=text.strip(),
            new_tokens=len(new),
            prompt_tokens=len(ids),
            truncated=len(full[i]) > room,
            stopped=stopped,
            seconds=time.perf_counter() - started,
            tool_calls=parse_tool_calls(text),
        )
        if progress:
            progress(k, len(prompts))
    return [g for g in out if g is not None]
