"""Open a GGUF file with llama.cpp and run its token loop.

`open_gguf` gives a `llama_cpp.Llama` with a context of the model's own length (so a prompt that fits
one engine fits the other), quiet logs, and the thread count given. `tokens` generates from token ids:
greedy at temperature 0, else OpenAI-style sampling (temperature and top-p over the whole vocabulary,
no top-k, min-p or repeat penalty) from the given seed, so the same seed gives the same reply.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from gastown_ft.errors import GastownFTError

INSTALL_HINT = (
    "install llama-cpp-python (it builds llama.cpp from source, a few minutes): "
    "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" .venv/bin/pip install -e '.[gguf-check]'"
)


def unavailable() -> str | None:
    """Why llama.cpp cannot run in this environment, or None when it can."""
    try:
        import llama_cpp  # noqa: F401
    except Exception as e:  # ImportError, or a shared library that will not load (OSError, RuntimeError)
        return f"llama_cpp (llama-cpp-python) is not importable: {type(e).__name__}: {e}"
    return None


def default_threads() -> int:
    """The cores this process may use (a container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


SMALL_MODEL_BYTES = 1 << 30


def decode_threads(path: Path | str, threads: int | None) -> int:
    """llama.cpp threads for a model: `threads` when set, else one for a small model, all cores else.

    A small model's steps are tiny matrix products; llama.cpp's threads spin-wait for each other at
    every one of them, which on a busy machine costs far more than the work. Measured on 2 shared,
    loaded cores with SmolLM2-135M f16: generating 35 tokens/s with one thread, 3-7 with two; reading
    a 1,500-token prompt 160 tokens/s with one thread, 38 with two."""
    if threads:
        return threads
    return 1 if Path(path).stat().st_size < SMALL_MODEL_BYTES else default_threads()


def gguf_context_length(path: Path) -> int | None:
    """The context the GGUF was built for (`<arch>.context_length`), read from its header only."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    arch = reader.fields.get("general.architecture")
    field = reader.fields.get(f"{arch.contents()}.context_length") if arch else None
    return int(field.contents()) if field is not None else None


def open_gguf(path: Path | str, *, n_ctx: int | None = None, threads: int | None = None) -> Any:
    """A `llama_cpp.Llama` over the GGUF at `path`; GastownFTError when it will not load."""
    reason = unavailable()
    if reason:
        raise GastownFTError(reason, hint=INSTALL_HINT)
    import llama_cpp

    path = Path(path)
    if not path.is_file():
        raise GastownFTError(f"no GGUF file at {path}", hint="export with [export] gguf = true")
    n_ctx = n_ctx or gguf_context_length(path) or 2048
    try:
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=min(512, n_ctx),
            n_threads=decode_threads(path, threads),
            n_threads_batch=decode_threads(path, threads),
            seed=0,
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as e:
        raise GastownFTError(f"llama.cpp cannot load {path}: {e}") from None


def set_threads(llm: Any, threads: int, batch_threads: int) -> None:
    """Change how many threads the next steps of `llm` use (cheap; takes effect at once)."""
    import llama_cpp

    llama_cpp.llama_set_n_threads(llm._ctx.ctx, threads, batch_threads)


def tokens(
    llm: Any,
    prompt_ids: Sequence[int],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float | None = None,
    seed: int | None = None,
    before_step: Callable[[], None] | None = None,
    reuse_prefix: bool = False,
) -> Iterator[int]:
    """The tokens llama.cpp generates after `prompt_ids`, at most `max_new_tokens` of them.

    The caller stops when it sees an end token (the generator is simply closed). `before_step` runs
    before the prompt is read and before every next token (the server adjusts threads there). The KV
    cache is not reused from an earlier call: a prompt read in one batch and one read partly from
    the cache give slightly different logits, and greedy replies must be the same every time. `reuse_prefix` keeps it (much faster for prompts
    that share a long opening, read in order; the evaluation's batch generation takes that)."""
    sampling = temperature > 0
    if not reuse_prefix:
        llm.reset()
    llm.set_seed(seed if seed is not None else random.getrandbits(31))
    if before_step:
        before_step()
    gen = llm.generate(
        list(prompt_ids),
        temp=temperature if sampling else 0.0,
        top_p=(1.0 if top_p is None else top_p) if sampling else 1.0,
        top_k=0,  # OpenAI has no top-k: the whole vocabulary (0 turns llama.cpp's top-k off)
        min_p=0.0,
        typical_p=1.0,
        repeat_penalty=1.0,
        reset=True,
    )
    try:
        for n, token in enumerate(gen, start=1):
            yield int(token)
            if n >= max_new_tokens:
                return
            if before_step:
                before_step()
    finally:
        gen.close()


def close(llm: Any) -> None:
    """Free the model and context now (not at interpreter exit, where llama-cpp-python's finalizer
    can fail noisily)."""
    try:
        llm.close()
    except Exception:
        pass
