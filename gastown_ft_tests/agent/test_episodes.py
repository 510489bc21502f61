"""Episodes in the simulated town: a scripted perfect agent passes each one, a scripted bad agent fails
each one, and the scorer counts what the bad agent did wrong."""

from __future__ import annotations

import shlex

import pytest

from gastown_ft.agent.episodes import EPISODES, POLECAT_CYCLE
from gastown_ft.agent.scoring import run_episode, run_episodes
from gastown_ft.agent.scripted import ScriptedAgent
from gastown_ft.agent.shell import parse, resolve
from gastown_ft.corpus.grammar import validate_command


@pytest.mark.parametrize("ep", EPISODES, ids=lambda e: e.name)
def test_a_perfect_agent_passes_in_the_optimal_number_of_steps(ep):
    score = run_episode(ep, ScriptedAgent(ep.perfect))
    assert score.success, score.unmet
    assert score.action_steps == ep.optimal_steps
    assert (score.invalid_commands, score.wasted_steps, score.policy_refusals, score.policy_holds) == (
        0,
        0,
        0,
        0,
    )
    assert score.destructive_executed == 0


@pytest.mark.parametrize("ep", EPISODES, ids=lambda e: e.name)
def test_a_bad_agent_fails_and_the_scorer_says_why(ep):
    score = run_episode(ep, ScriptedAgent(ep.bad))
    assert not score.success and score.unmet
    assert score.wasted_steps > 0
    assert score.invalid_commands + score.policy_refusals + score.policy_holds + score.wasted_steps >= 1


def test_the_bad_agents_mistakes_are_counted_by_kind():
    bad = {ep.name: run_episode(ep, ScriptedAgent(ep.bad)) for ep in EPISODES}
    assert bad["polecat-cycle"].policy_refusals == 2  # push to main, force push
    assert bad["file-and-sling"].invalid_commands == 1  # bd create --severity (no such flag)
    assert bad["close-no-changes"].policy_refusals == 1  # bd delete
    assert bad["witness-patrol"].policy_holds == 1  # gt polecat nuke: held, and nobody to confirm
    assert all(s.destructive_executed == 0 for s in bad.values())  # the policy stopped every one


def test_run_episodes_aggregates_for_the_report():
    metrics = run_episodes(lambda m, t: ScriptedAgent(POLECAT_CYCLE.perfect)(m, t), episodes=[POLECAT_CYCLE])
    assert metrics["episodes"] == 1 and metrics["success_rate"] == 1.0 and metrics["succeeded"] == 1
    assert {"invalid_commands", "wasted_steps", "policy_refusals", "policy_holds", "per_episode"} <= set(
        metrics
    )
    mixed = run_episodes(_first_perfect_then_bad(), episodes=EPISODES)
    assert 0 < mixed["success_rate"] < 1


def _first_perfect_then_bad():
    agents: dict[str, ScriptedAgent] = {}

    def chat(messages, tools):
        key = messages[1]["content"]
        if key not in agents:
            ep = EPISODES[len(agents)]
            agents[key] = ScriptedAgent(ep.perfect if len(agents) == 0 else ep.bad)
        return agents[key](messages, tools)

    return chat


@pytest.mark.parametrize("ep", EPISODES, ids=lambda e: e.name)
def test_scripted_gt_and_bd_commands_are_real_commands(ep):
    """The perfect scripts use only commands the real CLIs accept (checked against the grammar)."""
    for turn in ep.perfect:
        for cmd in turn:
            text = cmd("✓ Created issue: le-abc12") if callable(cmd) else cmd
            for simple in parse(text).walk():
                inv = resolve(simple)
                if inv.program in ("gt", "bd"):
                    check = validate_command(shlex.join([inv.program, *inv.args]))
                    assert check.ok, (text, check.errors)


def test_the_loop_is_a_generator_a_batch_can_drive_and_a_model_error_ends_it():
    """agent_session yields each request and takes the turn back; run_agent is one driver of it."""
    from gastown_ft.agent.loop import agent_session
    from gastown_ft.agent.scoring import score_episode, start_episode
    from gastown_ft.errors import GastownFTError

    run = start_episode(POLECAT_CYCLE)
    agent = ScriptedAgent(POLECAT_CYCLE.perfect)
    session = agent_session(run.runner, run.messages, max_steps=6, nudges=run.nudges)
    request = next(session)
    try:
        while True:
            request = session.send(agent(request, []))
    except StopIteration as stop:
        result = stop.value
    assert result.stop_reason == "done" and score_episode(run, result).success
    run = start_episode(POLECAT_CYCLE)
    session = agent_session(run.runner, run.messages, max_steps=6, nudges=run.nudges)
    next(session)
    with pytest.raises(StopIteration) as stop:
        session.throw(GastownFTError("the model server went away"))
    assert stop.value.value.stop_reason == "error" and "went away" in stop.value.value.error
    assert not score_episode(run, stop.value.value).success
