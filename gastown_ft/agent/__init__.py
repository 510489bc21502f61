"""The model as a Gas Town agent, and a simulated town to measure it in.

- `cli`: `gastown-ft agent` (run), `agent preset` (Gas Town's Tier 1 agents.json entry), `agent episodes`.
- `context`: role context and hook at start (`gt prime` / `gt hook`, else the corpus role prompt).
- `client`: one turn from an OpenAI-compatible endpoint; `loop`: the tool-call loop (`run_agent`, or the
  `agent_session` generator a batch drives); `display`: the terminal.
- `tools`: the Bash and Read tools (the corpus's schemas) run through `policy` (allow / hold / refuse),
  every decision written by `audit`; `shell` reads command lines, `command_args` reads gt/bd invocations.
- `executors`: a real shell; `simtown` + `sim_cli` (gt, bd) + `sim_git`: the simulated town (same interface).
- `episodes`, `scripted`, `scoring`: multi-step episodes, scripted agents, metrics (`run_episodes`).
"""
