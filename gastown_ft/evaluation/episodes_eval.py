"""The multi-step episodes (agent/episodes.py) answered by the evaluation's own decoder, base and tuned.

The same sessions `gastown-ft agent episodes` runs against an endpoint, driven in-process: every
episode's agent loop (agent/loop.py `agent_session`) runs in lockstep, so each step is one batched
`generate` over the episodes still going. A model's reply is read as `gastown-ft serve` reads it
(`<tool_call>` blocks become tool calls), its commands go through the agent policy into the simulated
town, and each episode is scored on the state it leaves (agent/scoring.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gastown_ft.agent.client import AssistantTurn, calls_in_text
from gastown_ft.agent.episodes import EPISODES, Episode
from gastown_ft.agent.loop import agent_session
from gastown_ft.agent.scoring import score_episode, start_episode, summarize_episodes
from gastown_ft.agent.tools import TOOLS
from gastown_ft.evaluation.generate import Generation, Prompt


def turn_from(gen: Generation) -> AssistantTurn:
    """The model's reply as the agent loop gets it from an OpenAI-compatible server."""
    content, calls = calls_in_text(gen.text) if "<tool_call>" in gen.text else (gen.text, [])
    return AssistantTurn(
        content=content.strip(),
        tool_calls=calls,
        finish_reason="tool_calls" if calls else ("stop" if gen.stopped else "length"),
        prompt_tokens=gen.prompt_tokens,
        completion_tokens=gen.new_tokens,
        seconds=gen.seconds,
    )


def run_episodes_batched(
    decoder: Any,
    variant: str,
    *,
    episodes: Sequence[Episode] = EPISODES,
    max_steps: int,
    max_new_tokens: int,
    batch_size: int,
) -> dict[str, Any]:
    """Every episode once with `variant`, each step one batched generation; the episode metrics
    (agent/scoring.py `summarize_episodes`) with the replies' tokens."""
    runs = [start_episode(ep) for ep in episodes]
    sessions = [agent_session(r.runner, r.messages, max_steps=max_steps, nudges=r.nudges) for r in runs]
    results: list[Any] = [None] * len(runs)
    requests: dict[int, list[dict[str, Any]]] = {i: next(s) for i, s in enumerate(sessions)}
    step = 0
    new_tokens = 0
    while requests:
        step += 1
        live = sorted(requests)
        prompts = [
            Prompt([dict(m) for m in requests[i]], TOOLS, case_id=f"{runs[i].episode.name}#{step}")
            for i in live
        ]
        gens = decoder.generate(
            prompts, variant=variant, max_new_tokens=max_new_tokens, batch_size=batch_size
        )
        for i, gen in zip(live, gens, strict=True):
            new_tokens += gen.new_tokens
            try:
                requests[i] = sessions[i].send(turn_from(gen))
            except StopIteration as stop:
                results[i] = stop.value
                del requests[i]
    scores = [score_episode(r, res) for r, res in zip(runs, results, strict=True)]
    out = summarize_episodes(scores)
    out["max_steps"] = max_steps
    out["new_tokens"] = new_tokens
    return out
