"""Load a model (optionally with its LoRA adapter) and generate greedily in batches.

Base and tuned are the same loaded weights: the tuned model is the base with the adapter on, the base
is the same object under `peft`'s `disable_adapter()`. So both see exactly the same prompts, the same
tokenizer and the same decoding, and only one copy of the weights is in memory.

Prompts are rendered with the project's own chat template (`training.chat_format.render`, generation
prompt on) and tokenized without added special tokens, as training saw them. Generation is greedy,
batched with left padding, and stops at `<|im_end|>` or `</s>`. A prompt longer than the model's
context less the generation budget keeps its end (the request and the "answer now" line) and is
marked `truncated`.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gastown_ft.errors import GastownFTError
from gastown_ft.evaluation.prefix_cache import OpeningCache, opening_lengths
from gastown_ft.training.chat_format import BOS, EOS, TURN_END, canonical_tools, render, sequence_prefix

_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


@dataclass
class LoadedModel:
    model: Any  # a transformers causal LM, or a peft model wrapping one
    tokenizer: Any
    model_dir: Path
    adapter_dir: Path | None
    stop_ids: list[int]
    pad_id: int
    context: int  # positions the model was built for
    merged: Any = None  # the tuned model with its adapter merged in, once `prepare_decoding` made it

    @contextlib.contextmanager
    def variant(self, which: str) -> Iterator[Any]:
        """The model as "base" (adapter off) or "tuned" (adapter on, or merged; needs an adapter)."""
        if which == "tuned":
            if self.adapter_dir is None:
                raise ValueError("no adapter loaded: there is no tuned variant")
            yield self.merged if self.merged is not None else self.model
        elif which == "base":
            if self.adapter_dir is None:
                yield self.model
            else:
                with self.model.disable_adapter():
                    yield self.model
        else:
            raise ValueError(f"unknown variant {which!r}")

    def prepare_decoding(self, bf16: bool) -> None:
        """Ready both variants for greedy decoding, once the losses are scored: the tuned one as a
        merged copy (decoding a small model costs mostly one matrix product after another, and the
        unmerged adapter adds two more to each adapted layer), then both in bf16 when asked (the
        weights' memory traffic halves where the CPU has native bf16). Merged in fp32, then cast."""
        import copy

        import torch

        if self.adapter_dir is not None and self.merged is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.merged = copy.deepcopy(self.model).merge_and_unload().eval()
        if bf16:
            self.model.to(torch.bfloat16)
            if self.merged is not None:
                self.merged.to(torch.bfloat16)


def _check_dir(path: Path, what: str, marker: str, hint: str) -> None:
    if not path.is_dir():
        raise GastownFTError(f"{what} not found: {path}", hint=hint)
    if not (path / marker).is_file():
        raise GastownFTError(f"{what} {path} has no {marker}", hint=hint)


def stop_token_ids(tokenizer) -> list[int]:
    """The ids generation stops at: the turn end, EOS, and the tokenizer's own EOS (each once)."""
    stop_ids = []
    for token in (TURN_END, EOS):
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            stop_ids.append(tid)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stop_ids:
        stop_ids.append(int(tokenizer.eos_token_id))
    return stop_ids


def load_model(model_dir: str | Path, adapter_dir: str | Path | None = None) -> LoadedModel:
    """The model in `model_dir` (a Hugging Face directory) in eval mode, with the adapter when given."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    model_dir = Path(model_dir).expanduser()
    _check_dir(
        model_dir,
        "model directory",
        "config.json",
        "pass the directory save_pretrained wrote (config.json, weights, tokenizer), e.g. "
        "<artifacts>/models/embedded",
    )
    if adapter_dir is not None:
        adapter_dir = Path(adapter_dir).expanduser()
        _check_dir(
            adapter_dir,
            "adapter directory",
            "adapter_config.json",
            "pass the adapter directory training wrote: <artifacts>/training/runs/<run>/adapter",
        )
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        if adapter_dir is not None:
            from peft import PeftModel

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        where = f"{model_dir}" + (f" with adapter {adapter_dir}" if adapter_dir else "")
        raise GastownFTError(
            f"cannot load the model at {where}: {e}",
            hint="check that the adapter was trained on this base model (adapter_config.json names it)",
        ) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model.eval()
    stop_ids = stop_token_ids(tokenizer)
    pad = next((v for v in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if v is not None), 0)
    config = model.config if adapter_dir is None else model.get_base_model().config
    context = int(getattr(config, "max_position_embeddings", 0) or tokenizer.model_max_length or 2048)
    return LoadedModel(model, tokenizer, model_dir, adapter_dir, stop_ids, int(pad), context)


SMALL_MODEL_PARAMETERS = 200_000_000


@contextlib.contextmanager
def torch_threads(loaded: LoadedModel, threads: int | None) -> Iterator[int]:
    """Run with `threads` torch threads; by default one for a small model.

    Decoding a small model is a chain of tiny matrix products: with several threads their start-up and
    synchronisation cost more than the work, and on a busy machine far more (measured on 2 shared
    cores: 400 ms a step with 2 threads, 4-7 ms with 1, for the test model)."""
    import torch

    if threads is None:
        n = sum(p.numel() for p in loaded.model.parameters())
        threads = 1 if n < SMALL_MODEL_PARAMETERS else torch.get_num_threads()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


@dataclass
class Prompt:
    """A request to the model: chat messages (and tools) ending where the assistant answers."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    max_new_tokens: int | None = None  # this prompt's budget; None: the call's
    case_id: str | None = None  # names the case in what the evaluation reports about this generation


@dataclass
class Generation:
    text: str  # what the model wrote, stop token excluded
    new_tokens: int
    prompt_tokens: int
    truncated: bool  # the prompt was cut to fit the context
    stopped: bool  # ended at a stop token (not at the budget)
    seconds: float  # this request's latency: from its batch's start until its own last token
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    # This request's share of the wall time (its batch's seconds / the batch's size; alone: `seconds`):
    # summed over a call, the call's wall time, so tokens/s is not inflated by batching.
    share_seconds: float | None = None
    batch_size: int = 1  # requests that shared the forward passes (their latency overlaps)

    @property
    def wall_share(self) -> float:
        return self.seconds if self.share_seconds is None else self.share_seconds

    @property
    def content(self) -> str:
        """The text without its tool-call blocks."""
        return _TOOL_CALL.sub("", self.text).strip()


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """The `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks of a reply that parse."""
    calls = []
    for body in _TOOL_CALL.findall(text):
        try:
            call = json.loads(body)
        except json.JSONDecodeError:
            continue
        if isinstance(call, dict) and isinstance(call.get("name"), str):
            args = call.get("arguments")
            calls.append({"name": call["name"], "arguments": args if isinstance(args, dict) else {}})
    return calls


def render_prompt(prompt: Prompt, tokenizer=None) -> str:
    """The prompt as the model's chat template renders it (its sequence prefix included)."""
    bos = sequence_prefix(tokenizer) if tokenizer is not None else BOS
    tools = canonical_tools(prompt.tools) or None  # the key order training saw, whoever wrote them
    return render(prompt.messages, tools, add_generation_prompt=True, bos=bos)


def generate(
    loaded: LoadedModel,
    prompts: Sequence[Prompt],
    *,
    variant: str,
    max_new_tokens: int,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    share_openings: bool = True,
) -> list[Generation]:
    """Greedy completions of `prompts` by the "base" or "tuned" variant, in the order given.

    Prompts are batched by budget and length (less padding); each batch generates up to the largest
    budget in it and each output is cut to its own budget. A prompt is cut (keeping its end) so that it
    and its batch's budget fit the model's context.
    """
    import torch
    from transformers import GenerationConfig, StoppingCriteriaList

    tok = loaded.tokenizer
    budgets = [min(max_new_tokens, p.max_new_tokens or max_new_tokens) for p in prompts]
    full = [tok(render_prompt(p, tok), add_special_tokens=False, verbose=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: (budgets[i], len(full[i])))
    # each shared opening (system prompt and tools) is prefilled once, not once a row (prefix_cache.py)
    openings = opening_lengths(full) if share_openings else [0] * len(prompts)
    out: list[Generation | None] = [None] * len(prompts)
    done = 0
    with loaded.variant(variant) as model, torch.inference_mode():
        cached = OpeningCache(model, full, openings)
        for k in range(0, len(order), batch_size):
            chunk = order[k : k + batch_size]
            budget = max(budgets[i] for i in chunk)
            room = max(16, loaded.context - budget)  # prompt + generation stay within the context
            ids = {i: full[i][-room:] for i in chunk}
            started = time.perf_counter()  # a request's latency includes its opening's prefill
            opens = [openings[i] if len(full[i]) <= room else 0 for i in chunk]
            extra: dict[str, Any] = {}
            if any(opens):
                input_ids, mask, extra["cache"] = cached.batch([ids[i] for i in chunk], opens, loaded.pad_id)
            else:
                w = max(len(ids[i]) for i in chunk)
                input_ids = torch.tensor([[loaded.pad_id] * (w - len(ids[i])) + ids[i] for i in chunk])
                mask = torch.tensor([[0] * (w - len(ids[i])) + [1] * len(ids[i]) for i in chunk])
            width = input_ids.shape[1]
            config = GenerationConfig(
                max_new_tokens=budget,
                do_sample=False,
                num_beams=1,
                eos_token_id=loaded.stop_ids or None,
                pad_token_id=loaded.pad_id,
                bos_token_id=tok.bos_token_id,
            )
            finish = _FinishTimes(width, [budgets[i] for i in chunk], loaded.stop_ids, started)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = model.generate(
                    input_ids=input_ids,
                    attention_mask=mask,
                    generation_config=config,
                    stopping_criteria=StoppingCriteriaList([finish]),
                    **extra,
                )
            seconds = time.perf_counter() - finish.started
            for row, i in enumerate(chunk):
                new = result[row, width:].tolist()[: budgets[i]]
                stop = next((j for j, t in enumerate(new) if t in loaded.stop_ids), None)
                kept = new if stop is None else new[:stop]
                text = tok.decode(kept, skip_special_tokens=False)
                out[i] = Generation(
                    text=text.strip(),
                    new_tokens=len(kept),
                    prompt_tokens=len(ids[i]),
                    truncated=len(full[i]) > room,
                    stopped=stop is not None,
                    seconds=finish.seconds(row, seconds),
                    tool_calls=parse_tool_calls(text),
                    share_seconds=seconds / len(chunk),
                    batch_size=len(chunk),
                )
            done += len(chunk)
            if progress:
                progress(done, len(prompts))
    return [g for g in out if g is not None]


class _FinishTimes:
    """A stopping criterion that stops nothing: it notes when each row of a batch wrote its stop token
    or reached its own budget, so each request's latency is its own, not its batch's."""

    def __init__(self, width: int, budgets: list[int], stop_ids: list[int], started: float) -> None:
        self.width = width
        self.budgets = budgets
        self.stop_ids = set(stop_ids)
        self.done: dict[int, float] = {}
        self.started = started

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        now = time.perf_counter()
        new = input_ids.shape[1] - self.width
        last = input_ids[:, -1].tolist()
        for row, token in enumerate(last):
            if row not in self.done and (token in self.stop_ids or new >= self.budgets[row]):
                self.done[row] = now - self.started
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def seconds(self, row: int, batch_seconds: float) -> float:
        return self.done.get(row, batch_seconds)
