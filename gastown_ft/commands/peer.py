"""`gastown-ft peer`: the swarm key, and joining a collaborative training run from another machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

peer_app = typer.Typer(
    no_args_is_help=True,
    help="Train one adapter together with other machines (hivemind): the swarm key and `join`.",
)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to gastown-ft.toml.")]


@peer_app.command()
def keygen(
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write the key; default: swarm.key_file.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key file.")] = False,
    show: Annotated[bool, typer.Option("--show", help="Only print the id of the existing key.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Write a new swarm key (copy the same file to every machine of the swarm), or show its id."""
    from gastown_ft.cli import console, settings_for_command
    from gastown_ft.swarm.keys import generate_key_file, load_key
    from gastown_ft.swarm.session import key_path

    path = out or key_path(settings_for_command(config))
    if show:
        console.print(f"swarm key id {load_key(path).key_id} ({path})")
        return
    key = generate_key_file(path, overwrite=force)
    console.print(
        f"wrote swarm key {key.key_id} to {path} (mode 600); copy this file to every machine of the swarm "
        "over a trusted channel (scp); anyone holding it can join your runs"
    )


@peer_app.command()
def join(
    run_id: Annotated[str, typer.Option("--run-id", help="The run id the first machine printed.")],
    initial_peers: Annotated[
        list[str] | None,
        typer.Option("--initial-peers", help="A multiaddr the first machine printed (repeatable)."),
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="TCP port to listen on (0: any).")] = None,
    client_mode: Annotated[
        bool | None, typer.Option("--client-mode/--no-client-mode", help="Behind NAT: only dial out.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Join a swarm training run as one more peer: same corpus version, base model and settings.

    Refuses when this machine's corpus splits, base model or training settings differ from the run's."""
    from gastown_ft.cli import console, settings_for_command
    from gastown_ft.errors import GastownFTError
    from gastown_ft.swarm.session import join_run

    settings = settings_for_command(config)
    overrides = {}
    if port is not None:
        overrides["listen_port"] = port
    if client_mode is not None:
        overrides["client_mode"] = client_mode
    if overrides:
        settings = settings.model_copy(update={"swarm": settings.swarm.model_copy(update=overrides)})
    peers = list(initial_peers or []) or list(settings.swarm.initial_peers)
    if not peers:
        raise GastownFTError(
            "no peer to join: pass --initial-peers with an address the first machine printed",
            hint="or set swarm.initial_peers in gastown-ft.toml",
        )

    def progress(ev: dict) -> None:
        console.print(
            f"step {ev['step']}/{ev['total_steps']} loss {ev['loss']:.4f} peers {ev.get('peers', '?')} "
            f"{ev['tokens_per_s']:,.0f} tokens/s",
            highlight=False,
            markup=False,
        )

    result = join_run(
        settings,
        run_id,
        peers,
        log=lambda m: console.print(m, highlight=False, markup=False),
        progress=progress,
    )
    swarm, train = result.swarm, result.train
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "status": train.status,
                    "adapter_dir": str(train.adapter_dir) if train.adapter_dir else None,
                    "steps": train.steps_done,
                    "val_loss": train.val_loss,
                    "swarm": swarm.to_dict(),
                }
            )
        )
    else:
        console.print(
            f"{train.status}: step {train.steps_done}/{train.total_steps}, {swarm.samples} sequences trained "
            f"here, {swarm.peers_seen} peers seen; adapter in {train.adapter_dir}",
            highlight=False,
            markup=False,
        )
    if train.status != "completed":
        raise typer.Exit(1)


def register(app) -> None:
    app.add_typer(peer_app, name="peer")
