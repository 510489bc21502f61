"""`gastown-ft agent`: the model as a Gas Town agent, its Tier 1 preset, and its episodes.

    gastown-ft agent [OPTIONS] [PROMPT]     run the agent here (same as `gastown-ft agent run`)
    gastown-ft agent preset [--write]       the settings/agents.json entry for Gas Town
    gastown-ft agent episodes               score a model on the simulated-town episodes

Gas Town launches an agent as `<command> <args...> "<prompt>"` (prompt_mode "arg"), so a first word that
is not a subcommand is taken as the start of `run`'s options and prompt.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup


class _RunByDefault(TyperGroup):
    def parse_args(self, ctx, args):
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["run", *args]
        return super().parse_args(ctx, args)


agent_app = typer.Typer(
    cls=_RunByDefault,
    no_args_is_help=False,
    help="Run the model as a Gas Town agent (tool calls through a safety policy), register it with Gas "
    "Town, and score it on simulated-town episodes.",
)

BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        envvar="GASTOWN_FT_AGENT_BASE_URL",
        help="OpenAI-compatible endpoint (…/v1); default: `gastown-ft serve` per the config.",
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", envvar="GASTOWN_FT_AGENT_MODEL", help="Model id; default serve.model_name."),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar=["GASTOWN_FT_API_KEY", "OPENAI_API_KEY"],
        show_envvar=True,
        help="API key, if the endpoint wants one (read from the environment; not needed for serve).",
    ),
]


def _endpoint(base_url: str | None, model: str | None) -> tuple[str, str]:
    from gastown_ft.cli import settings_for_command

    cfg = settings_for_command().serve
    host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::", "") else cfg.host
    return base_url or f"http://{host}:{cfg.port}/v1", model or cfg.model_name


def _default_log(session: str) -> Path:
    """Outside the agent's worktree (a log file there would dirty the tree `gt done` checks)."""
    root = os.environ.get("GT_ROOT")
    base = Path(root) / "logs" / "gastown-ft-agent" if root else Path.home() / ".local/state/gastown-ft/agent"
    return base / f"{time.strftime('%Y%m%d-%H%M%S')}-{session}.jsonl"


@agent_app.command("run")
def run(
    prompt: Annotated[
        str | None,
        typer.Argument(help="Work instructions (Gas Town passes them here); default: run your hook."),
    ] = None,
    base_url: BaseUrlOpt = None,
    model: ModelOpt = None,
    api_key: ApiKeyOpt = None,
    role: Annotated[str | None, typer.Option(help="Gas Town role; default from GT_ROLE / gt prime.")] = None,
    rig: Annotated[str | None, typer.Option(help="Rig; default from GT_RIG / GT_ROLE.")] = None,
    workdir: Annotated[Path, typer.Option(help="Where commands run.")] = Path("."),
    max_steps: Annotated[int, typer.Option(min=1, help="Model turns before the agent stops.")] = 30,
    max_tokens: Annotated[int, typer.Option(min=16, help="Reply length per turn.")] = 1024,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.0,
    allow: Annotated[
        list[str] | None, typer.Option(help="Also allow this program (repeatable), e.g. --allow pytest.")
    ] = None,
    confirm: Annotated[
        bool | None,
        typer.Option(
            "--confirm/--no-confirm",
            help="Ask the operator about held commands (default: when stdin is a terminal). With "
            "--no-confirm a held command is not run.",
        ),
    ] = None,
    repl: Annotated[
        bool | None,
        typer.Option(
            help="When the model stops, wait for typed input (Gas Town nudges); default: on a terminal."
        ),
    ] = None,
    log: Annotated[
        Path | None, typer.Option(help="Decision log (JSONL); default under $GT_ROOT/logs.")
    ] = None,
    sim: Annotated[
        str | None,
        typer.Option(help="Run in a simulated town (an episode's name, see `agent episodes --list`)."),
    ] = None,
) -> None:
    """Run the model as a Gas Town agent in this directory: role context from `gt prime` (or the corpus
    role prompt), its hook, then tool calls (Bash, Read) through the safety policy until `gt done`."""
    from gastown_ft.agent.audit import DecisionLog
    from gastown_ft.agent.client import OpenAIChat
    from gastown_ft.agent.context import gather
    from gastown_ft.agent.display import RichDisplay
    from gastown_ft.agent.episodes import episode
    from gastown_ft.agent.executors import ShellExecutor
    from gastown_ft.agent.loop import run_agent
    from gastown_ft.agent.policy import Policy
    from gastown_ft.agent.preset import READY_PROMPT
    from gastown_ft.agent.tools import ToolRunner
    from gastown_ft.cli import console

    url, model_id = _endpoint(base_url, model)
    interactive = sys.stdin.isatty()
    if sim:
        try:
            ep = episode(sim)
        except KeyError as e:
            raise typer.BadParameter(str(e.args[0]), param_hint="--sim") from None
        executor = ep.setup()
        role, prompt = role or ep.role, prompt or ep.task
        ctx = gather(
            executor, has_gt=True, has_bd=True, role=role, rig=executor.rig, env={"BD_ACTOR": executor.actor}
        )
    else:
        executor = ShellExecutor(workdir)
        ctx = gather(
            executor, has_gt=bool(shutil.which("gt")), has_bd=bool(shutil.which("bd")), role=role, rig=rig
        )
    dlog = DecisionLog(log or _default_log(time.strftime("%H%M%S")), role=ctx.role)
    policy = Policy(
        role=ctx.role,
        workdir=executor.workdir,
        current_branch=executor.current_branch,
        extra_programs=frozenset(allow or ()),
    )

    def ask_operator(verdict) -> bool:
        console.print(
            f"[yellow]held:[/yellow] {escape(verdict.command)}\n  {escape(verdict.reason)}", highlight=False
        )
        return typer.confirm("  run it?", default=False)

    def read_input() -> str | None:
        try:
            text = console.input(READY_PROMPT)
        except (EOFError, KeyboardInterrupt):
            return None
        return None if text.strip() in ("exit", "quit") else text

    runner = ToolRunner(
        executor, policy, dlog, ask_operator if (interactive if confirm is None else confirm) else None
    )
    console.print(
        f"[bold]gastown-ft agent[/bold]  {escape(model_id)} at {escape(url)}\n"
        f"  role {ctx.role or '?'}, rig {ctx.rig or '-'}; context: {ctx.source}; "
        f"workdir {escape(executor.workdir)}{' (simulated town: ' + sim + ')' if sim else ''}\n"
        f"  decisions logged to {escape(str(dlog.path))}",
        highlight=False,
    )
    chat = OpenAIChat(url, model_id, api_key=api_key, temperature=temperature, max_tokens=max_tokens)
    result = run_agent(
        chat,
        runner,
        ctx.messages(prompt),
        max_steps=max_steps,
        nudges=1 if ctx.role == "polecat" else 0,
        display=RichDisplay(console),
        ask=read_input if (interactive if repl is None else repl) else None,
    )
    counts = {
        k: sum(o.outcome == k for o in result.outcomes)
        for k in ("ran", "confirmed", "refused", "held", "declined", "invalid")
    }
    console.print(
        f"stopped: {result.stop_reason} after {result.steps} steps; "
        + ", ".join(f"{v} {k}" for k, v in counts.items() if v),
        highlight=False,
    )
    if result.error:
        from gastown_ft.errors import GastownFTError

        raise GastownFTError(result.error)


@agent_app.command("preset")
def preset_cmd(
    base_url: BaseUrlOpt = None,
    model: ModelOpt = None,
    name: Annotated[str, typer.Option(help="The agent name Gas Town will know it by.")] = "gastown-ft",
    write: Annotated[
        bool, typer.Option(help="Add it to the town's (or rig's) settings/agents.json.")
    ] = False,
    town: Annotated[
        Path | None, typer.Option(help="Town root for --write; default $GT_ROOT, else ~/gt.")
    ] = None,
    rig: Annotated[
        str | None, typer.Option(help="With --write: the rig's agents.json instead of the town's.")
    ] = None,
) -> None:
    """Print (or --write) the Tier 1 preset that lets Gas Town launch this agent:
    `gt sling <bead> <rig> --agent gastown-ft`."""
    from gastown_ft.agent.preset import preset, registry, registry_path, write_preset
    from gastown_ft.cli import console

    url, model_id = _endpoint(base_url, model)
    entry = preset(url, model_id, name=name)
    if not write:
        print(json.dumps(registry(entry), indent=2))
        return
    root = (town or Path(os.environ.get("GT_ROOT") or "~/gt")).expanduser()
    path = registry_path(root, rig)
    write_preset(path, entry)
    console.print(f"wrote the {name!r} preset to {path}", highlight=False)
    console.print(
        f"next: start the model (`gastown-ft serve`), then `gt sling <bead> <rig> --agent {name}`",
        highlight=False,
    )


@agent_app.command("episodes")
def episodes_cmd(
    base_url: BaseUrlOpt = None,
    model: ModelOpt = None,
    api_key: ApiKeyOpt = None,
    episode_names: Annotated[
        list[str] | None, typer.Option("--episode", "-e", help="Only this episode (repeatable).")
    ] = None,
    max_steps: Annotated[int, typer.Option(min=1)] = 12,
    max_tokens: Annotated[int, typer.Option(min=16)] = 512,
    log_dir: Annotated[Path | None, typer.Option(help="Write each episode's decision log here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    show: Annotated[bool, typer.Option(help="Show every turn and tool call.")] = False,
    list_only: Annotated[bool, typer.Option("--list", help="List the episodes and exit.")] = False,
) -> None:
    """Score a model on the simulated-town episodes: success, invalid commands, wasted steps, refusals."""
    from gastown_ft.agent.display import RichDisplay
    from gastown_ft.agent.episodes import EPISODES, episode
    from gastown_ft.agent.scoring import run_episodes
    from gastown_ft.cli import console

    if list_only:
        for ep in EPISODES:
            console.print(f"{ep.name:<18} {ep.role:<9} {ep.description}", highlight=False)
        return
    try:
        chosen = [episode(n) for n in episode_names] if episode_names else None
    except KeyError as e:
        raise typer.BadParameter(str(e.args[0]), param_hint="--episode") from None
    url, model_id = _endpoint(base_url, model)
    metrics = run_episodes(
        url,
        model=model_id,
        api_key=api_key,
        episodes=chosen,
        max_steps=max_steps,
        max_tokens=max_tokens,
        log_dir=log_dir,
        display=RichDisplay(console) if show else None,
    )
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    table = Table(title=f"episodes: {model_id} at {url}")
    for col in ("episode", "success", "steps (optimal)", "invalid", "wasted", "refused", "held", "stop"):
        table.add_column(col)
    for row in metrics["per_episode"]:
        table.add_row(
            row["name"],
            "[green]yes[/green]" if row["success"] else "[red]no[/red]",
            f"{row['action_steps']} ({row['optimal_steps']})",
            str(row["invalid_commands"]),
            str(row["wasted_steps"]),
            str(row["policy_refusals"]),
            str(row["policy_holds"]),
            row["stop_reason"],
        )
    console.print(table)
    console.print(
        f"success {metrics['succeeded']}/{metrics['episodes']} ({metrics['success_rate']:.0%}); "
        f"invalid commands {metrics['invalid_commands']}; wasted steps {metrics['wasted_steps']}; "
        f"policy refusals {metrics['policy_refusals']}, holds {metrics['policy_holds']}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(agent_app, name="agent")
