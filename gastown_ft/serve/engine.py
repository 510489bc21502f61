"""The model behind the endpoint: load it, follow promotions, generate replies.

Two engines run the same model: llama.cpp over the version's GGUF file (llama_engine.py) and
transformers over its merged safetensors. `choose_engine` picks one per loaded version: "auto" takes
llama.cpp when the version has the GGUF and llama_cpp imports, else transformers, and says why
(`EngineChoice.note`, shown in the banner and /health). Prompts are rendered and tokenized, and replies
decoded, by the same Hugging Face tokenizer on both engines, so the two differ only in the forward pass.

Generation runs in worker threads (the event loop stays free for /health and queued requests), at
most `parallel` replies at once: each llama.cpp reply has its own context (the weights are shared),
transformers replies share the model. `Engine.run` reports through a callback:

    ("start", {"prompt_tokens", "label"})  the prompt fits and generation begins
    ("text", str)                          more of the reply (never part of a stop string)
    ("done", Finished)                     finish_reason "stop" or "length", token counts
    ("error", RequestError)                nothing was generated (bad request, or the server failed)

Greedy when the temperature is 0; stops at the end-of-turn / eos tokens and at the request's stop
strings, which are never sent (text that could begin one is held back until it can't).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gastown_ft.errors import GastownFTError
from gastown_ft.export.registry import MERGED_DIR, Registry
from gastown_ft.serve.protocol import ChatRequest, RequestError
from gastown_ft.serve.tool_calls import _held_prefix
from gastown_ft.training.chat_format import TURN_END, canonical_tools

log = logging.getLogger("gastown_ft.serve")

Emit = Callable[[str, Any], None]

ENGINES = ("auto", "llama.cpp", "transformers")
GGUF_NAME = "model.gguf"  # what the export writes beside merged/ (export/bundle.py)


@dataclass(frozen=True)
class ModelChoice:
    """What to serve: a model directory, the registry version it is (if any), and whether to follow
    the registry's promotions from then on."""

    path: Path
    version: str | None = None
    follow: Registry | None = None


@dataclass(frozen=True)
class EngineChoice:
    engine: str  # "llama.cpp" or "transformers"
    gguf: Path | None  # the file llama.cpp runs
    note: str | None = None  # why "auto" did not take llama.cpp (a fallback), else None


def gguf_path(model_dir: Path, quant: str | None = None) -> Path:
    """Where an export keeps the GGUF of the model in `model_dir` (bundle/merged -> bundle/model.gguf),
    or its `quant` copy (bundle/model.Q4_K_M.gguf)."""
    from gastown_ft.export.quantize import quantized_name

    model_dir = Path(model_dir)
    bundle = model_dir.parent if model_dir.name == MERGED_DIR else model_dir
    return bundle / (quantized_name(GGUF_NAME, quant) if quant else GGUF_NAME)


def choose_engine(
    requested: str, model_dir: Path, *, quant: str | None = None, device: str = "cpu"
) -> EngineChoice:
    """The engine for the model in `model_dir`; GastownFTError when `requested` cannot be had."""
    from gastown_ft.llamacpp.runtime import INSTALL_HINT, unavailable

    if requested not in ENGINES:
        raise GastownFTError(f"unknown engine {requested!r}", hint=f"one of: {', '.join(ENGINES)}")
    if requested == "transformers":
        if quant:
            raise GastownFTError(
                "a quantized GGUF runs on llama.cpp only", hint="use --engine llama.cpp or auto"
            )
        return EngineChoice("transformers", None)
    gguf = gguf_path(model_dir, quant)
    missing = None if gguf.is_file() else f"no {gguf.name} beside {model_dir}"
    why = unavailable() or missing
    if why is None and device == "cuda":
        import llama_cpp

        if not llama_cpp.llama_supports_gpu_offload():
            why = "this llama-cpp-python build runs on the CPU only and a GPU is visible"
    if why is None:
        return EngineChoice("llama.cpp", gguf)
    if requested == "llama.cpp" or quant:
        raise GastownFTError(
            f"cannot serve with llama.cpp: {why}",
            hint=INSTALL_HINT
            if unavailable()
            else "export with [export] gguf = true (and gguf_quantize for a quantized copy), or use --engine transformers",
        )
    return EngineChoice("transformers", None, note=f"llama.cpp not used: {why}")


@dataclass
class LoadedModel:
    model: Any  # a transformers model, or a llama_engine.LlamaPool
    tokenizer: Any
    path: Path
    version: str | None
    eos_ids: list[int]
    context_length: int
    device: str
    created: int  # when the model files were written (for /v1/models)
    engine: str = "transformers"
    gguf: Path | None = None
    note: str | None = None  # why not llama.cpp, when "auto" fell back

    @property
    def label(self) -> str:
        return f"gastown-ft-{self.version}" if self.version else f"gastown-ft-dir-{self.path.name}"


@dataclass(frozen=True)
class Finished:
    finish_reason: str  # "stop" (end of turn or stop string) or "length"
    prompt_tokens: int
    completion_tokens: int


def pick_device(preference: str) -> str:
    import torch

    if preference == "cuda" and not torch.cuda.is_available():
        raise GastownFTError('[serve] device = "cuda" but no CUDA GPU is visible', hint='use device = "auto"')
    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return preference


def _tokenizer_and_stops(path: Path) -> tuple[Any, list[int], int]:
    """The tokenizer (with its chat template), the ids that end a reply, and the context length."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    if not (path / "config.json").is_file():
        raise GastownFTError(
            f"{path} is not a model directory (no config.json)",
            hint="serve a registered version (`gastown-ft models list`) or an export's merged/ directory",
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise GastownFTError(f"cannot load the model in {path}: {e}") from None
    if not tokenizer.chat_template:
        raise GastownFTError(f"the tokenizer in {path} has no chat template", hint="export the model again")
    try:
        eos = GenerationConfig.from_pretrained(path).eos_token_id
    except OSError:  # no generation_config.json: the model config's
        eos = getattr(config, "eos_token_id", None)
    eos_ids = {*(eos if isinstance(eos, list) else [eos] if eos is not None else [])}
    for tok in (TURN_END, tokenizer.eos_token):
        tid = tokenizer.convert_tokens_to_ids(tok) if tok else None
        if tid is not None and tid != tokenizer.unk_token_id:
            eos_ids.add(tid)
    context = getattr(config, "max_position_embeddings", None) or tokenizer.model_max_length
    return tokenizer, sorted(eos_ids), int(context)


def load_model(
    path: Path,
    *,
    version: str | None,
    device: str,
    engine: EngineChoice | None = None,
    parallel: int = 1,
    threads: int | None = None,
) -> LoadedModel:
    """A model directory with a chat template, ready to generate on the chosen engine."""
    path = Path(path)
    engine = engine or EngineChoice("transformers", None)
    tokenizer, eos_ids, context = _tokenizer_and_stops(path)
    if engine.engine == "llama.cpp":
        from gastown_ft.serve.llama_engine import LlamaPool

        model = LlamaPool(engine.gguf, n_ctx=context, size=parallel, threads=threads)
        device = "cpu"
    else:
        model = _load_transformers(path, device, threads)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        path=path,
        version=version,
        eos_ids=eos_ids,
        context_length=context,
        device=device,
        created=int((path / "config.json").stat().st_mtime),
        engine=engine.engine,
        gguf=engine.gguf,
        note=engine.note,
    )


def _load_transformers(path: Path, device: str, threads: int | None = None) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    from gastown_ft.evaluation.generate import SMALL_MODEL_PARAMETERS
    from gastown_ft.training.base_model import cpu_has_native_bf16

    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
    except (OSError, ValueError) as e:
        raise GastownFTError(f"cannot load the model in {path}: {e}") from None
    slow_half = model.dtype == torch.float16 or (model.dtype == torch.bfloat16 and not cpu_has_native_bf16())
    if device == "cpu" and slow_half:
        model = model.float()  # half precision without CPU support for it is many times slower than float32
    if device == "cpu" and threads is None and model.num_parameters() < SMALL_MODEL_PARAMETERS:
        # Token-by-token decoding of a small model: more threads cost more in start-up and
        # synchronisation than they save, far more on a busy machine (as evaluation.generate finds).
        torch.set_num_threads(1)
    return model.to(device).eval()


class ReplyDecoder:
    """Token ids in, reply text out (stop strings cut, partial characters held); also a generate()
    streamer for transformers."""

    def __init__(
        self, tokenizer, eos_ids: list[int], stops: list[str], on_text: Callable[[str], None]
    ) -> None:
        self.tokenizer = tokenizer
        self.eos_ids = set(eos_ids)
        self.stops = stops
        self.on_text = on_text
        self.ids: list[int] = []
        self.emitted = 0  # characters of the decoded reply already handed on
        self.n_tokens = 0
        self.ended = False  # end of turn or a stop string
        self.stop_hit = False
        self._prompt_seen = False

    def _decode(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def _emit_upto(self, text: str, end: int) -> None:
        if end > self.emitted:
            self.on_text(text[self.emitted : end])
            self.emitted = end

    def add(self, token: int) -> None:
        if self.ended:
            return
        self.n_tokens += 1
        if token in self.eos_ids:
            self.ended = True
            return
        self.ids.append(token)
        text = self._decode()
        hits = [i for s in self.stops if (i := text.find(s, self.emitted)) >= 0]
        if hits:
            self._emit_upto(text, min(hits))
            self.ended = self.stop_hit = True
            return
        safe = len(text) - max((_held_prefix(text, s) for s in self.stops), default=0)
        if text.endswith("\ufffd"):  # a character cut between tokens: wait for the rest of it
            safe = min(safe, len(text.rstrip("\ufffd")))
        self._emit_upto(text, safe)

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt itself
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.add(token)

    def end(self) -> None:
        pass

    def flush(self) -> None:
        if not self.stop_hit:
            text = self._decode()
            self._emit_upto(text, len(text))


class Engine:
    def __init__(
        self,
        choice: ModelChoice,
        *,
        device: str = "auto",
        max_tokens: int = 512,
        temperature: float = 0.0,
        engine: str = "auto",
        quant: str | None = None,
        parallel: int = 1,
        threads: int | None = None,
    ):
        self.device = pick_device(device)
        self.default_max_tokens = max_tokens
        self.default_temperature = temperature
        self.requested_engine = engine
        self.quant = quant
        self.parallel = max(1, parallel)
        self.threads = threads
        self.registry = choice.follow
        self.reload_error: str | None = None
        self._failed_version: str | None = None  # not retried on every request
        self._slots = threading.BoundedSemaphore(self.parallel)
        self._switch = threading.Lock()  # one promotion check / model switch at a time
        self._rng = threading.Lock()  # transformers samples from torch's global generator
        self.loaded = self._load(choice.path, choice.version)

    def _load(self, path: Path, version: str | None) -> LoadedModel:
        chosen = choose_engine(self.requested_engine, Path(path), quant=self.quant, device=self.device)
        return load_model(
            path,
            version=version,
            device=self.device,
            engine=chosen,
            parallel=self.parallel,
            threads=self.threads,
        )

    @property
    def engine(self) -> str:
        return self.loaded.engine

    def engine_summary(self) -> str:
        """One line for the banner: the engine, its file, and any fallback."""
        lm = self.loaded
        if lm.engine == "llama.cpp":
            return f"llama.cpp ({lm.gguf.name}, up to {self.parallel} replies at once)"
        text = f"transformers ({lm.device}, up to {self.parallel} replies at once)"
        return text + (f"; {lm.note}" if lm.note else "")

    def describe(self) -> dict[str, Any]:
        lm = self.loaded
        return {
            "version": lm.version,
            "path": str(lm.path),
            "engine": lm.engine,
            "engine_requested": self.requested_engine,
            "engine_fallback": lm.note,
            "gguf": str(lm.gguf) if lm.gguf else None,
            "parallel": self.parallel,
            "device": lm.device,
            "context_length": lm.context_length,
            "following_promotions": self.registry is not None,
            "reload_error": self.reload_error,
        }

    def _follow_promotions(self) -> None:
        """Switch to the registry's promoted version when it changed (a promote or a rollback).

        Replies already running finish on the model they started with."""
        if self.registry is None:
            return
        try:
            current = self.registry.current()
        except GastownFTError as e:
            self.reload_error = str(e)
            return
        if current is None or current.version in (self.loaded.version, self._failed_version):
            return
        started = time.perf_counter()
        try:
            self.loaded = self._load(current.merged_dir, current.version)
        except Exception as e:
            # Keep answering with the model we have; /health says why the switch failed.
            self.reload_error = f"cannot switch to {current.version}: {e}"
            self._failed_version = current.version
            log.error(self.reload_error)
            return
        self.reload_error = self._failed_version = None
        log.warning(
            "now serving %s on %s (%s), loaded in %.1fs",
            current.version,
            self.loaded.engine,
            self.loaded.gguf or current.merged_dir,
            time.perf_counter() - started,
        )

    def run(self, req: ChatRequest, emit: Emit, cancel: threading.Event) -> None:
        """Generate the reply to `req`, reporting through `emit` (see the module doc). Thread body."""
        try:
            with self._slots:
                if cancel.is_set():
                    return
                with self._switch:
                    self._follow_promotions()
                    lm = self.loaded
                self._generate(lm, req, emit, cancel)
        except RequestError as e:
            emit("error", e)
        except Exception as e:  # a failure of the model itself: the client gets a 500, the log the detail
            log.exception("generation failed")
            emit(
                "error",
                RequestError(f"generation failed: {type(e).__name__}: {e}", status=500, type="server_error"),
            )

    def prompt_ids(self, lm: LoadedModel, req: ChatRequest) -> list[int]:
        # sanitize: a control token typed inside a message is text, so no one can forge a turn.
        enc = lm.tokenizer.apply_chat_template(
            req.messages,
            tools=canonical_tools(req.tools),  # the key order training saw
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            sanitize_control_tokens=True,
        )
        return list(enc["input_ids"])

    def _generate(self, lm: LoadedModel, req: ChatRequest, emit: Emit, cancel: threading.Event) -> None:
        try:
            ids = self.prompt_ids(lm, req)
        except Exception as e:  # the template refused these messages
            raise RequestError(
                f"cannot render these messages with the chat template: {e}", param="messages"
            ) from None
        room = lm.context_length - len(ids)
        if room <= 0:
            raise RequestError(
                f"the prompt is {len(ids)} tokens; this model's context is {lm.context_length}",
                param="messages",
                code="context_length_exceeded",
            )
        max_new = min(req.max_tokens or self.default_max_tokens, room)
        temperature = self.default_temperature if req.temperature is None else req.temperature
        decoder = ReplyDecoder(lm.tokenizer, lm.eos_ids, req.stop, lambda text: emit("text", text))
        if lm.engine == "llama.cpp":
            emit("start", {"prompt_tokens": len(ids), "label": lm.label})
            lm.model.generate(
                ids,
                decoder,
                cancel,
                max_new_tokens=max_new,
                temperature=temperature,
                top_p=req.top_p,
                seed=req.seed,
            )
        else:
            sampling = temperature > 0
            # A seeded sample needs torch's global generator to itself; greedy replies run side by side.
            with self._rng if sampling else contextlib.nullcontext():
                emit("start", {"prompt_tokens": len(ids), "label": lm.label})
                _generate_transformers(lm, ids, decoder, cancel, max_new, temperature, req.top_p, req.seed)
        decoder.flush()
        emit("done", Finished("stop" if decoder.ended else "length", len(ids), decoder.n_tokens))


def _generate_transformers(
    lm: LoadedModel,
    ids: list[int],
    decoder: ReplyDecoder,
    cancel: threading.Event,
    max_new: int,
    temperature: float,
    top_p: float | None,
    seed: int | None,
) -> None:
    import torch
    from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

    sampling = temperature > 0

    class _Halt(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            halt = cancel.is_set() or decoder.ended
            return torch.full((input_ids.shape[0],), halt, dtype=torch.bool, device=input_ids.device)

    config = GenerationConfig(
        max_new_tokens=max_new,
        do_sample=sampling,
        temperature=temperature if sampling else None,
        top_p=(1.0 if top_p is None else top_p) if sampling else None,
        top_k=0 if sampling else None,  # OpenAI has no top-k: sample from the whole top-p mass
        eos_token_id=lm.eos_ids,
        pad_token_id=lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.eos_ids[0],
        bos_token_id=lm.tokenizer.bos_token_id,
    )
    if sampling and seed is not None:
        torch.manual_seed(seed)  # the caller holds the engine's generator lock for this reply
    input_ids = torch.tensor([ids], dtype=torch.long, device=lm.device)
    with torch.inference_mode():
        lm.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            generation_config=config,
            streamer=decoder,
            stopping_criteria=StoppingCriteriaList([_Halt()]),
        )
