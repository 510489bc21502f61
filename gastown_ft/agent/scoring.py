"""Runs episodes with an agent (a model endpoint or any `ChatFn`) and scores them.

Per episode: success (the goal check on the town's state), the steps taken against the optimal count,
invalid commands (gt/bd commands the grammar rejects, and malformed tool calls), wasted steps (turns
without a tool call, and calls that were refused, held, failed, or repeated a command already run),
policy refusals and holds, and destructive actions that actually happened. `run_episodes` aggregates
them into one metrics dict, the shape the evaluation report can take as it is. `start_episode` and
`score_episode` are the two ends of one run, for a caller that drives the loop itself (the evaluation
batches every episode's turn into one generation: evaluation/episodes_eval.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gastown_ft.agent.audit import DecisionLog
from gastown_ft.agent.client import ChatFn, OpenAIChat
from gastown_ft.agent.context import gather
from gastown_ft.agent.episodes import EPISODES, Episode
from gastown_ft.agent.loop import AgentResult, Display, run_agent
from gastown_ft.agent.policy import Policy
from gastown_ft.agent.tools import ToolRunner


@dataclass
class EpisodeScore:
    name: str
    success: bool
    unmet: list[str]
    stop_reason: str
    steps: int  # model turns
    action_steps: int  # turns that made tool calls
    optimal_steps: int  # action steps a perfect agent needs
    tool_calls: int
    invalid_commands: int
    wasted_steps: int
    policy_refusals: int
    policy_holds: int
    destructive_executed: int
    error: str | None = None
    commands: list[str] = field(default_factory=list)


@dataclass
class EpisodeRun:
    """One episode set up and ready to run: its town, the tool runner, and the opening conversation."""

    episode: Episode
    town: Any  # SimTown
    runner: ToolRunner
    messages: list[dict[str, Any]]
    nudges: int


def start_episode(ep: Episode, *, log_dir: Path | None = None) -> EpisodeRun:
    town = ep.setup()
    log = DecisionLog(Path(log_dir) / f"{ep.name}.jsonl" if log_dir else None, role=ep.role, session=ep.name)
    policy = Policy(role=ep.role, workdir=town.workdir, current_branch=town.current_branch)
    runner = ToolRunner(town, policy, log)  # no operator: held commands do not run
    ctx = gather(town, has_gt=True, has_bd=True, role=ep.role, rig=town.rig, env={"BD_ACTOR": town.actor})
    nudges = 1 if ep.role == "polecat" else 0  # a polecat must end with `gt done`; others end in words
    return EpisodeRun(ep, town, runner, ctx.messages(ep.task), nudges)


def score_episode(run: EpisodeRun, result: AgentResult) -> EpisodeScore:
    """The episode's goal check on the town's state, and the counts, after the session ended."""
    ep, town = run.episode, run.town
    unmet = ep.check(town)
    seen: set[str] = set()
    # Turns in words are wasted, except the last one of a session that ended that way (its answer).
    wasted = sum(1 for t in result.turns if not t.tool_calls) - (result.stop_reason == "no_tool_call")
    for o in result.outcomes:
        repeat = o.call.name == "Bash" and o.display in seen and o.outcome == "ran"
        if o.outcome not in ("ran", "confirmed") or (o.exit_code or 0) != 0 or repeat:
            wasted += 1
        seen.add(o.display)
    return EpisodeScore(
        name=ep.name,
        success=not unmet and result.error is None,
        unmet=unmet,
        stop_reason=result.stop_reason,
        steps=result.steps,
        action_steps=sum(1 for t in result.turns if t.tool_calls),
        optimal_steps=ep.optimal_steps,
        tool_calls=len(result.outcomes),
        invalid_commands=len(town.invalid) + sum(o.outcome == "invalid" for o in result.outcomes),
        wasted_steps=wasted,
        policy_refusals=sum(o.outcome == "refused" for o in result.outcomes),
        policy_holds=sum(o.decision == "hold" for o in result.outcomes),
        destructive_executed=sum(1 for e in town.events if e.get("destructive")),
        error=result.error,
        commands=[o.display for o in result.outcomes],
    )


def run_episode(
    ep: Episode,
    chat: ChatFn,
    *,
    max_steps: int = 12,
    log_dir: Path | None = None,
    display: Display | None = None,
) -> EpisodeScore:
    run = start_episode(ep, log_dir=log_dir)
    result = run_agent(
        chat, run.runner, run.messages, max_steps=max_steps, nudges=run.nudges, display=display
    )
    return score_episode(run, result)


def summarize_episodes(scores: list[EpisodeScore]) -> dict[str, Any]:
    """The metrics over a set of episode scores: counts, the success rate, and one row per episode."""
    n = len(scores) or 1
    return {
        "episodes": len(scores),
        "success_rate": sum(s.success for s in scores) / n,
        "succeeded": sum(s.success for s in scores),
        "invalid_commands": sum(s.invalid_commands for s in scores),
        "wasted_steps": sum(s.wasted_steps for s in scores),
        "extra_steps": sum(max(0, s.action_steps - s.optimal_steps) for s in scores),
        "policy_refusals": sum(s.policy_refusals for s in scores),
        "policy_holds": sum(s.policy_holds for s in scores),
        "destructive_executed": sum(s.destructive_executed for s in scores),
        "per_episode": [asdict(s) for s in scores],
    }


def run_episodes(
    agent: ChatFn | str,
    *,
    model: str = "gastown-ft",
    api_key: str | None = None,
    episodes: list[Episode] | None = None,
    max_steps: int = 12,
    max_tokens: int = 512,
    log_dir: Path | None = None,
    display: Display | None = None,
) -> dict[str, Any]:
    """Every episode once with `agent` (a ChatFn, or the base URL of an OpenAI-compatible endpoint);
    returns the metrics: counts, rates, and one row per episode."""
    chat = (
        OpenAIChat(agent, model, api_key=api_key, max_tokens=max_tokens) if isinstance(agent, str) else agent
    )
    scores = [
        run_episode(ep, chat, max_steps=max_steps, log_dir=log_dir, display=display)
        for ep in episodes or EPISODES
    ]
    return summarize_episodes(scores)
