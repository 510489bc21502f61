"""The model behind the endpoint: load it, follow promotions, generate one reply at a time.

Generation runs in a worker thread (the event loop stays free for /health and queued requests) under
one lock, so replies never interleave on the model. `Engine.run` reports through a callback:

    ("start", {"prompt_tokens", "label"})  the prompt fits and generation begins
    ("text", str)                          more of the reply (never part of a stop string)
    ("done", Finished)                     finish_reason "stop" or "length", token counts
    ("error", RequestError)                nothing was generated (bad request, or the server failed)

Greedy when the temperature is 0; stops at the end-of-turn / eos tokens and at the request's stop
strings, which are never sent (text that could begin one is held back until it can't).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gastown_ft.errors import GastownFTError
from gastown_ft.export.registry import Registry
from gastown_ft.serve.protocol import ChatRequest, RequestError
from gastown_ft.serve.tool_calls import _held_prefix
from gastown_ft.training.chat_format import TURN_END

log = logging.getLogger("gastown_ft.serve")

Emit = Callable[[str, Any], None]


@dataclass(frozen=True)
class ModelChoice:
    """What to serve: a model directory, the registry version it is (if any), and whether to follow
    the registry's promotions from then on."""

    path: Path
    version: str | None = None
    follow: Registry | None = None


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    path: Path
    version: str | None
    eos_ids: list[int]
    context_length: int
    device: str
    created: int  # when the model files were written (for /v1/models)

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


def load_model(path: Path, *, version: str | None, device: str) -> LoadedModel:
    """A Hugging Face model directory with a chat template, ready to generate."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gastown_ft.training.base_model import cpu_has_native_bf16

    path = Path(path)
    if not (path / "config.json").is_file():
        raise GastownFTError(
            f"{path} is not a model directory (no config.json)",
            hint="serve a registered version (`gastown-ft models list`) or an export's merged/ directory",
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
    except (OSError, ValueError) as e:
        raise GastownFTError(f"cannot load the model in {path}: {e}") from None
    if not tokenizer.chat_template:
        raise GastownFTError(f"the tokenizer in {path} has no chat template", hint="export the model again")
    slow_half = model.dtype == torch.float16 or (model.dtype == torch.bfloat16 and not cpu_has_native_bf16())
    if device == "cpu" and slow_half:
        model = model.float()  # half precision without CPU support for it is many times slower than float32
    model.to(device).eval()
    eos = model.generation_config.eos_token_id
    eos_ids = {*(eos if isinstance(eos, list) else [eos] if eos is not None else [])}
    for tok in (TURN_END, tokenizer.eos_token):
        tid = tokenizer.convert_tokens_to_ids(tok) if tok else None
        if tid is not None and tid != tokenizer.unk_token_id:
            eos_ids.add(tid)
    context = getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        path=path,
        version=version,
        eos_ids=sorted(eos_ids),
        context_length=int(context),
        device=device,
        created=int((path / "config.json").stat().st_mtime),
    )


class _ReplyDecoder:
    """A generate() streamer: token ids in, reply text out (stop strings cut, partial characters held)."""

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

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt itself
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
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

    def end(self) -> None:
        pass

    def flush(self) -> None:
        if not self.stop_hit:
            text = self._decode()
            self._emit_upto(text, len(text))


class Engine:
    def __init__(
        self, choice: ModelChoice, *, device: str = "auto", max_tokens: int = 512, temperature: float = 0.0
    ):
        self.device = pick_device(device)
        self.default_max_tokens = max_tokens
        self.default_temperature = temperature
        self.registry = choice.follow
        self.reload_error: str | None = None
        self._failed_version: str | None = None  # not retried on every request
        self._lock = threading.Lock()
        self.loaded = load_model(choice.path, version=choice.version, device=self.device)

    def describe(self) -> dict[str, Any]:
        lm = self.loaded
        return {
            "version": lm.version,
            "path": str(lm.path),
            "device": lm.device,
            "context_length": lm.context_length,
            "following_promotions": self.registry is not None,
            "reload_error": self.reload_error,
        }

    def _follow_promotions(self) -> None:
        """Switch to the registry's promoted version when it changed (a promote or a rollback)."""
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
            self.loaded = load_model(current.merged_dir, version=current.version, device=self.device)
        except Exception as e:
            # Keep answering with the model we have; /health says why the switch failed.
            self.reload_error = f"cannot switch to {current.version}: {e}"
            self._failed_version = current.version
            log.error(self.reload_error)
            return
        self.reload_error = self._failed_version = None
        log.warning(
            "now serving %s (%s), loaded in %.1fs",
            current.version,
            current.merged_dir,
            time.perf_counter() - started,
        )

    def run(self, req: ChatRequest, emit: Emit, cancel: threading.Event) -> None:
        """Generate the reply to `req`, reporting through `emit` (see the module doc). Thread body."""
        try:
            with self._lock:
                if cancel.is_set():
                    return
                self._follow_promotions()
                self._generate(self.loaded, req, emit, cancel)
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
            tools=req.tools,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            sanitize_control_tokens=True,
        )
        return list(enc["input_ids"])

    def _generate(self, lm: LoadedModel, req: ChatRequest, emit: Emit, cancel: threading.Event) -> None:
        import torch
        from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

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
        sampling = temperature > 0
        decoder = _ReplyDecoder(lm.tokenizer, lm.eos_ids, req.stop, lambda text: emit("text", text))

        class _Halt(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                halt = cancel.is_set() or decoder.ended
                return torch.full((input_ids.shape[0],), halt, dtype=torch.bool, device=input_ids.device)

        config = GenerationConfig(
            max_new_tokens=max_new,
            do_sample=sampling,
            temperature=temperature if sampling else None,
            top_p=(1.0 if req.top_p is None else req.top_p) if sampling else None,
            top_k=0 if sampling else None,  # OpenAI has no top-k: sample from the whole top-p mass
            eos_token_id=lm.eos_ids,
            pad_token_id=lm.tokenizer.pad_token_id
            if lm.tokenizer.pad_token_id is not None
            else lm.eos_ids[0],
            bos_token_id=lm.tokenizer.bos_token_id,
        )
        if sampling and req.seed is not None:
            torch.manual_seed(req.seed)  # the lock makes the global generator ours for this reply
        emit("start", {"prompt_tokens": len(ids), "label": lm.label})
        input_ids = torch.tensor([ids], dtype=torch.long, device=lm.device)
        with torch.inference_mode():
            lm.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=config,
                streamer=decoder,
                stopping_criteria=StoppingCriteriaList([_Halt()]),
            )
        decoder.flush()
        emit("done", Finished("stop" if decoder.ended else "length", len(ids), decoder.n_tokens))
