"""Which engine writes the evaluation's answers: transformers, or llama.cpp over GGUF files.

Both engines answer the same `Prompt`s with the same `Generation`s (see generate.py and
llamacpp/generate.py): prompts are rendered and tokenized by the same Hugging Face tokenizer, decoding
is greedy and stops at the same tokens. They differ in the forward pass only: transformers runs the
loaded weights (fp32 or bf16, the tuned variant merged in memory); llama.cpp runs two GGUF files, the
base model's and the merged tuned model's (f16), made once and cached by fingerprint (gguf_cache.py).

`open_decoder` picks one. "auto" takes llama.cpp where llama_cpp imports and the GGUF files can be
made, else transformers, and says why (`Decoder.fallback`); "llama.cpp" insists (an engine that cannot
run is refused, not replaced); "transformers" never converts anything.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gastown_ft.errors import GastownFTError
from gastown_ft.evaluation.generate import Generation, LoadedModel, Prompt, generate

ENGINES = ("auto", "llama.cpp", "transformers")
Log = Callable[[str], None]


class TransformersDecoder:
    """Both variants on the loaded transformers model (the adapter off for "base")."""

    engine = "transformers"
    fallback: str | None = None

    def __init__(self, loaded: LoadedModel, fallback: str | None = None) -> None:
        self.loaded = loaded
        self.fallback = fallback

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        variant: str,
        max_new_tokens: int,
        batch_size: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Generation]:
        return generate(
            self.loaded,
            prompts,
            variant=variant,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            progress=progress,
        )

    def generate_variants(
        self, prompts: Sequence[Prompt], variants: Sequence[str], *, max_new_tokens: int, batch_size: int
    ) -> dict[str, list[Generation]]:
        """Each variant's answers, one variant after the other (each batch already uses the threads)."""
        return {
            v: self.generate(prompts, variant=v, max_new_tokens=max_new_tokens, batch_size=batch_size)
            for v in variants
        }

    def variants(self) -> dict[str, dict[str, Any]]:
        tuned = "merged" if self.loaded.merged is not None else "adapter"
        out = {"base": {"engine": self.engine, "weights": str(self.loaded.model_dir)}}
        if self.loaded.adapter_dir is not None:
            out["tuned"] = {"engine": self.engine, "weights": f"{self.loaded.adapter_dir} ({tuned})"}
        return out

    def close(self) -> None:
        pass


class LlamaCppDecoder:
    """Each variant on its own GGUF file, opened when first asked for (one llama.cpp thread for a small
    model, as `serve` runs it: see llamacpp/runtime.py `decode_threads`). llama.cpp reads one prompt at
    a time, so where the cores allow, the variants answer side by side, each in its own thread with its
    own tokenizer (a Rust tokenizer must not be shared between threads)."""

    engine = "llama.cpp"
    fallback: str | None = None

    def __init__(self, files: dict[str, Path], tokenizer: Any, *, threads: int | None = None) -> None:
        self.files = files
        self.tokenizer = tokenizer
        self.threads = threads
        self._open: dict[str, Any] = {}

    def model(self, variant: str):
        from gastown_ft.llamacpp.generate import load_gguf_model

        if variant not in self.files:
            raise ValueError(f"no GGUF file for the {variant!r} variant")
        if variant not in self._open:
            tok = self.tokenizer if not self._open else copy.deepcopy(self.tokenizer)
            self._open[variant] = load_gguf_model(self.files[variant], tok, threads=self.threads)
        return self._open[variant]

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        variant: str,
        max_new_tokens: int,
        batch_size: int,  # noqa: ARG002  (llama.cpp reads one prompt at a time, each at full speed)
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Generation]:
        from gastown_ft.llamacpp.generate import generate as gguf_generate

        return gguf_generate(self.model(variant), prompts, max_new_tokens=max_new_tokens, progress=progress)

    def generate_variants(
        self, prompts: Sequence[Prompt], variants: Sequence[str], *, max_new_tokens: int, batch_size: int
    ) -> dict[str, list[Generation]]:
        """Each variant's answers: side by side when each variant's threads fit the cores together."""
        models = {v: self.model(v) for v in variants}  # opened here, not in the threads
        if len(variants) < 2 or not self.side_by_side(len(variants)):
            return {
                v: self.generate(prompts, variant=v, max_new_tokens=max_new_tokens, batch_size=batch_size)
                for v in variants
            }
        from gastown_ft.llamacpp.generate import generate as gguf_generate

        with ThreadPoolExecutor(max_workers=len(variants), thread_name_prefix="eval-llama") as pool:
            futures = {
                v: pool.submit(gguf_generate, models[v], prompts, max_new_tokens=max_new_tokens)
                for v in variants
            }
            return {v: f.result() for v, f in futures.items()}

    def side_by_side(self, n: int = 2) -> bool:
        """Whether `n` variants can answer at once, each on its own threads, within this process's cores."""
        from gastown_ft.llamacpp.runtime import default_threads

        return self.thread_count() * n <= default_threads()

    def thread_count(self) -> int:
        from gastown_ft.llamacpp.runtime import decode_threads

        return decode_threads(self.files["base"], self.threads)

    def variants(self) -> dict[str, dict[str, Any]]:
        return {v: {"engine": self.engine, "gguf": str(p)} for v, p in self.files.items()}

    def close(self) -> None:
        for m in self._open.values():
            m.close()
        self._open.clear()


Decoder = TransformersDecoder | LlamaCppDecoder


def open_decoder(
    requested: str,
    loaded: LoadedModel,
    gguf_cache: Path | None,
    *,
    log: Log = lambda _msg: None,
) -> tuple[Decoder, dict[str, Any]]:
    """The decoder for `requested` ("auto", "llama.cpp", "transformers") and what it took: {"seconds"
    (GGUF conversion, 0 when cached), "converted" (files made now), "cache"}. GastownFTError when
    "llama.cpp" is requested and cannot run, or `requested` is unknown."""
    from gastown_ft.llamacpp.runtime import INSTALL_HINT, unavailable

    if requested not in ENGINES:
        raise GastownFTError(f"unknown evaluation engine {requested!r}", hint=f"one of: {', '.join(ENGINES)}")
    if requested == "transformers":
        return TransformersDecoder(loaded), {}
    why = unavailable()
    hint = INSTALL_HINT
    if why is None:
        if gguf_cache is None:
            why, hint = "no GGUF cache directory was given", "pass gguf_cache"
        else:
            from gastown_ft.llamacpp.gguf_cache import gguf_pair

            log("evaluation: GGUF files for llama.cpp (cached by fingerprint) ...")
            try:
                pair = gguf_pair(loaded.model_dir, loaded.adapter_dir, gguf_cache)
            except GastownFTError as e:
                why, hint = f"the GGUF files cannot be made: {e}", 'use [evaluation] engine = "transformers"'
            else:
                files = {"base": pair.base} | ({"tuned": pair.tuned} if pair.tuned else {})
                made = ", ".join(pair.converted) or "none (all cached)"
                log(f"evaluation: GGUF files ready in {pair.seconds:.1f} s (converted: {made})")
                info = {
                    "seconds": round(pair.seconds, 2),
                    "converted": list(pair.converted),
                    "cache": str(gguf_cache),
                }
                return LlamaCppDecoder(files, loaded.tokenizer), info
    if requested == "llama.cpp":
        raise GastownFTError(f"cannot evaluate with llama.cpp: {why}", hint=hint)
    note = f"llama.cpp not used: {why}"
    log(f"evaluation: {note}; answers come from transformers")
    return TransformersDecoder(loaded, fallback=note), {}
