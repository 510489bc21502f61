"""What the agent knows when it starts: its role, its rig, its role context and its hook.

Inside a town (`gt` on PATH) that is what Gas Town gives every agent: `gt prime` (role documentation,
hooked work, formula checklist) and `gt hook`. Without `gt`, the role prompt the corpus trains with
(`gastown_ft.corpus.examples.system_prompt`) stands in for the role context, and the hook comes from
`bd` if it is there (`bd list --status hooked --assignee <BD_ACTOR>`, as patrols check it), else none.

Role and rig come from the operator's options, else Gas Town's environment (`GT_ROLE`, `GT_RIG`,
`BD_ACTOR`, see agent-provider-integration.md), else the primed text. The conversation is laid out as
the corpus lays out a primed session: the role/rig system prompt, then the primed text as the first
user message.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gastown_ft.agent.executors import Executor
from gastown_ft.corpus.examples import system_prompt
from gastown_ft.corpus.roles import role_from_actor, role_from_text

DEFAULT_TASK = {
    "polecat": "Run the work on your hook now (the propulsion principle: no confirmation, no waiting). "
    "When it is done, run `gt done`.",
    None: "Check your hook and run what is on it. When your work is done, run `gt done`.",
}


@dataclass
class RoleContext:
    role: str | None
    rig: str | None
    actor: str | None
    prime: str | None  # `gt prime` output
    hook: str | None  # `gt hook` (or bd) output
    source: str  # where the role context came from: "gt prime" | "corpus role prompt"

    @property
    def system(self) -> str:
        return system_prompt(self.role, self.rig)

    def first_message(self, task: str | None = None) -> str:
        parts = []
        if self.prime:
            parts.append(self.prime.rstrip())
        if self.hook and not (self.prime and self.hook.strip() in self.prime):
            parts.append(f"## Your hook\n{self.hook.strip()}")
        elif not self.prime and not self.hook:
            parts.append("## Your hook\nNothing hooked.")
        parts.append(task or DEFAULT_TASK.get(self.role, DEFAULT_TASK[None]))
        return "\n\n".join(parts)

    def messages(self, task: str | None = None) -> list[dict[str, Any]]:
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.first_message(task)},
        ]


def gather(
    executor: Executor,
    *,
    has_gt: bool,
    has_bd: bool,
    role: str | None = None,
    rig: str | None = None,
    env: Mapping[str, str] | None = None,
) -> RoleContext:
    env = os.environ if env is None else env
    gt_role = env.get("GT_ROLE") or ""
    actor = env.get("BD_ACTOR") or (gt_role if "/" in gt_role else None)  # `gastown/crew/jack` is an address
    env_role, env_rig, _ = role_from_actor(env.get("GT_ROLE"))
    if env_role is None and actor:
        env_role, env_rig2, _ = role_from_actor(actor)
        env_rig = env_rig or env_rig2
    role = role or env_role
    rig = rig or env.get("GT_RIG") or env_rig
    prime = hook = None
    if has_gt:
        res = executor.run("gt prime")
        prime = res.output if res.exit_code == 0 and res.output.strip() else None
        res = executor.run("gt hook")
        hook = res.output if res.exit_code == 0 else None
        if prime and (role is None or rig is None):
            r2, rig2, _ = role_from_text(prime)
            role, rig = role or r2, rig or rig2
    elif has_bd and actor:
        res = executor.run(f"bd list --status hooked --assignee {shlex.quote(actor)}")
        hook = res.output if res.exit_code == 0 else None
    return RoleContext(role, rig, actor, prime, hook, "gt prime" if prime else "corpus role prompt")
