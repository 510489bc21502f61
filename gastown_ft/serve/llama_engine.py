"""The llama.cpp engine of `serve`: a pool of llama.cpp contexts over one GGUF file.

A llama.cpp context holds one conversation's KV cache and is not safe to share between threads, so
each concurrent reply takes its own (made on first need, up to the server's `parallel`; the file is
memory-mapped, so the weights are in memory once). The cores are shared among the replies running:
before every token each context is set to cores / running replies threads (at most the decode
threads of `runtime.decode_threads`), so several replies do not oversubscribe the cores (llama.cpp's
threads spin while they wait, which on an oversubscribed machine costs far more than it saves).
"""

from __future__ import annotations

import atexit
import threading
import weakref
from pathlib import Path
from typing import Any

from gastown_ft.llamacpp.runtime import (
    close,
    decode_threads,
    default_threads,
    open_gguf,
    set_threads,
    tokens,
)

_POOLS: weakref.WeakSet = weakref.WeakSet()


class LlamaPool:
    def __init__(self, gguf: Path, *, n_ctx: int, size: int = 1, threads: int | None = None) -> None:
        self.gguf = Path(gguf)
        self.n_ctx = n_ctx
        self.size = max(1, size)
        self.threads = threads or default_threads()
        self.decode_cap = decode_threads(self.gguf, threads)
        self._lock = threading.Lock()
        self._free: list[Any] = [open_gguf(self.gguf, n_ctx=n_ctx, threads=self.threads)]  # fail at load
        self._made = 1
        self._running = 0
        _POOLS.add(self)

    def _take(self) -> Any:
        with self._lock:
            self._running += 1
            if self._free:
                return self._free.pop()
            self._made += 1
        try:
            return open_gguf(self.gguf, n_ctx=self.n_ctx, threads=self.threads)
        except BaseException:
            with self._lock:
                self._running -= 1
                self._made -= 1
            raise

    def _give_back(self, llm: Any) -> None:
        with self._lock:
            self._running -= 1
            self._free.append(llm)

    def share(self) -> int:
        """Threads for one reply now: the cores divided among the replies running (at most the
        model's `decode_threads`)."""
        return min(max(1, self.threads // max(1, self._running)), self.decode_cap)

    def generate(
        self,
        prompt_ids: list[int],
        decoder,
        cancel: threading.Event,
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float | None,
        seed: int | None,
    ) -> None:
        """Feed the reply's tokens to `decoder` (a serve.engine.ReplyDecoder) until it ends, the
        budget is spent or `cancel` is set."""
        llm = self._take()
        current = [0]

        def before_step() -> None:
            n = self.share()
            if n != current[0]:
                set_threads(llm, n, n)
                current[0] = n

        try:
            for token in tokens(
                llm,
                prompt_ids,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                seed=seed,
                before_step=before_step,
            ):
                decoder.add(token)
                if decoder.ended or cancel.is_set():
                    break
        finally:
            self._give_back(llm)

    def close(self) -> None:
        with self._lock:
            free, self._free = self._free, []
        for llm in free:
            close(llm)


@atexit.register
def _close_pools() -> None:
    for pool in list(_POOLS):
        pool.close()
