"""The HTTP side: an OpenAI-compatible Starlette app over an `Engine`.

    GET  /health                 liveness and which version is loaded
    GET  /v1/models              the one served model, under its stable name
    GET  /v1/models/{id}
    POST /v1/chat/completions    whole replies, or server-sent events with `stream: true`

Errors are OpenAI error bodies ({"error": {"message", "type", "param", "code"}}) so that clients
raise their usual exceptions.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gastown_ft.serve.engine import Engine, Finished
from gastown_ft.serve.protocol import (
    ChatRequest,
    RequestError,
    chunk_body,
    completion_body,
    error_body,
    new_completion_id,
    parse_chat_request,
    usage,
)
from gastown_ft.serve.tool_calls import ToolCallParser


def _error(e: RequestError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


class _EventStream(StreamingResponse):
    """Server-sent events that stop the generation when the response ends, however it ends
    (a client that hangs up must not keep the model busy)."""

    def __init__(self, events: AsyncIterator[str], reply: _Reply) -> None:
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._reply = reply

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._reply.cancel.set()


class _Reply:
    """One generation in its worker thread, its events read back on the event loop."""

    def __init__(self, engine: Engine, req: ChatRequest) -> None:
        self.req = req
        self.cancel = threading.Event()
        self._queue: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def emit(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))

        threading.Thread(target=engine.run, args=(req, emit, self.cancel), daemon=True).start()

    async def started(self) -> dict[str, Any]:
        """Waits for the model (queued behind other replies); raises the RequestError of a refused prompt."""
        kind, value = await self._queue.get()
        if kind == "error":
            raise value
        return value

    async def outputs(self) -> AsyncIterator[tuple[str, Any]]:
        """("content", str), ("tool_call", ToolCall), then ("done", Finished) or ("error", RequestError)."""
        parser = ToolCallParser() if self.req.parse_tool_calls else None
        while True:
            kind, value = await self._queue.get()
            if kind == "text":
                for event in parser.feed(value) if parser else [("content", value)]:
                    yield event
            elif kind == "done":
                for event in parser.finish() if parser else []:
                    yield event
                if parser and parser.calls and value.finish_reason == "stop":
                    value = Finished("tool_calls", value.prompt_tokens, value.completion_tokens)
                yield "done", value
                return
            else:
                yield kind, value
                return


def create_app(engine: Engine, model_name: str) -> Starlette:
    def model_card() -> dict[str, Any]:
        lm = engine.loaded
        return {
            "id": model_name,
            "object": "model",
            "created": lm.created,
            "owned_by": "gastown-ft",
            "version": lm.version,
        }

    def unknown_model(name: str) -> JSONResponse:
        return _error(
            RequestError(
                f"the model {name!r} does not exist here; this server serves {model_name!r}",
                status=404,
                param="model",
                code="model_not_found",
            )
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": model_name, **engine.describe()})

    async def list_models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [model_card()]})

    async def get_model(request: Request) -> Response:
        name = request.path_params["model_id"]
        return JSONResponse(model_card()) if name == model_name else unknown_model(name)

    async def chat_completions(request: Request) -> Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(RequestError("the request body is not valid JSON"))
        try:
            req = parse_chat_request(body)
        except RequestError as e:
            return _error(e)
        if req.model != model_name:
            return unknown_model(req.model)
        reply = _Reply(engine, req)
        try:
            start = await reply.started()
        except RequestError as e:
            return _error(e)
        except BaseException:
            reply.cancel.set()  # the client went away while queued
            raise
        meta = {"id": new_completion_id(), "model": model_name, "fingerprint": start["label"]}
        if req.stream:
            return _EventStream(_stream(reply, meta), reply)
        return await _whole(reply, meta)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse(error_body(exc.detail, type="invalid_request_error"), status_code=exc.status_code)

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", list_models),
            Route("/v1/models/{model_id:path}", get_model),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        ],
        exception_handlers={HTTPException: http_error},
    )


async def _whole(reply: _Reply, meta: dict[str, Any]) -> Response:
    content: list[str] = []
    calls = []
    try:
        async for kind, value in reply.outputs():
            if kind == "content":
                content.append(value)
            elif kind == "tool_call":
                calls.append(value.to_openai())
            elif kind == "error":
                return _error(value)
            else:
                done: Finished = value
    finally:
        reply.cancel.set()
    text = "".join(content)
    return JSONResponse(
        completion_body(
            id=meta["id"],
            model=meta["model"],
            content=text if text or not calls else None,
            tool_calls=calls,
            finish_reason=done.finish_reason,
            usage=usage(done.prompt_tokens, done.completion_tokens),
            fingerprint=meta["fingerprint"],
        )
    )


async def _stream(reply: _Reply, meta: dict[str, Any]) -> AsyncIterator[str]:
    created = int(time.time())

    def chunk(**kw: Any) -> str:
        return _sse(
            chunk_body(
                id=meta["id"], model=meta["model"], created=created, fingerprint=meta["fingerprint"], **kw
            )
        )

    n_calls = 0
    try:
        yield chunk(delta={"role": "assistant", "content": ""})
        async for kind, value in reply.outputs():
            if kind == "content":
                yield chunk(delta={"content": value})
            elif kind == "tool_call":
                yield chunk(delta={"tool_calls": [{"index": n_calls, **value.to_openai()}]})
                n_calls += 1
            elif kind == "error":
                yield _sse(value.body())
                break
            else:
                yield chunk(delta={}, finish_reason=value.finish_reason)
                if reply.req.include_usage:
                    yield chunk(usage=usage(value.prompt_tokens, value.completion_tokens))
        yield "data: [DONE]\n\n"
    finally:
        reply.cancel.set()  # the client may have gone: stop generating for it
