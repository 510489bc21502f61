"""`gastown-ft serve`: the promoted model as an OpenAI-compatible endpoint."""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind; default serve.host in the config (127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port; default serve.port in the config (8000).")] = None,
    model: Annotated[
        str | None,
        typer.Option(help="A version id (v3) or a model/export directory; default: the promoted version."),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="auto | llama.cpp | transformers; default serve.engine (auto: llama.cpp when the version "
            "has a GGUF and llama-cpp-python is installed)."
        ),
    ] = None,
    quantization: Annotated[
        str | None,
        typer.Option(help="none | q8_0 | q4_k_m: serve that quantized GGUF copy (llama.cpp)."),
    ] = None,
    parallel: Annotated[
        int | None, typer.Option(min=1, help="Replies generated at once; default serve.parallel (4).")
    ] = None,
) -> None:
    """Serve the promoted model at http://HOST:PORT/v1 (chat completions, streaming, tool calls)."""
    import logging
    import os

    import uvicorn

    from gastown_ft.cli import console, err_console, settings_for_command
    from gastown_ft.export.registry import Registry, registry_root
    from gastown_ft.serve.app import create_app
    from gastown_ft.serve.engine import Engine
    from gastown_ft.serve.selection import base_notice, choose_model

    settings = settings_for_command(None)
    cfg = settings.serve
    host = host or cfg.host
    port = port or cfg.port
    registry = Registry(registry_root(settings))
    choice, warnings = choose_model(registry, model, follow=cfg.follow_promotions)
    notice = base_notice(choice, registry)
    if notice:
        warnings.append(f"{choice.version or choice.path}: {notice}")
    for w in warnings:
        err_console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(
            f"[yellow]warning:[/yellow] binding {host}: the endpoint has no authentication; "
            "anyone who can reach this port can use the model",
            highlight=False,
        )
    _check_port_free(host, port)
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quant = quantization or cfg.quantization
    console.print(f"loading {choice.version or choice.path} ...", highlight=False)
    server = Engine(
        choice,
        device=cfg.device,
        max_tokens=cfg.max_tokens,
        temperature=cfg.temperature,
        engine=engine or cfg.engine,
        quant=None if quant == "none" else quant,
        parallel=parallel or cfg.parallel,
        threads=cfg.threads,
    )
    if server.loaded.note:  # "auto" fell back to transformers: say so where warnings go too
        err_console.print(f"[yellow]warning:[/yellow] {server.loaded.note}", highlight=False)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    base_url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/v1"
    console.print(
        f"serving {choice.version or choice.path} on {base_url}  (device {server.device})\n"
        f"  engine     {server.engine_summary()}\n"
        f"  base URL   {base_url}\n"
        f"  model      {cfg.model_name}\n"
        f"  api key    any non-empty string (none is checked)\n"
        + (f"  WARNING    {notice}\n" if notice else "")
        + ("  follows    promotions and rollbacks, without a restart\n" if choice.follow else "")
        + "Ctrl-C stops it.",
        highlight=False,
    )
    uvicorn.run(create_app(server, cfg.model_name), host=host, port=port, log_level="info")


def _check_port_free(host: str, port: int) -> None:
    """Fail before the (slow) model load when the port is taken, with a hint instead of a traceback."""
    import socket

    from gastown_ft.errors import GastownFTError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise GastownFTError(
                f"cannot listen on {host}:{port}: {e.strerror or e}",
                hint="another server holds the port: pick one with --port, or stop the other",
            ) from None


def register(app) -> None:
    app.command("serve")(serve)
