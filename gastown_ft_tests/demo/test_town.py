"""The demo town generator: layout, determinism, formulas, beads, transcripts, planted secrets, bad inputs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import tomllib
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from gastown_ft.demo.secrets import KINDS
from gastown_ft.demo.town import DemoTown, build_demo_town, encode_cwd

EVENT_TYPES = {
    "sling",
    "hook",
    "unhook",
    "handoff",
    "done",
    "mail",
    "spawn",
    "kill",
    "nudge",
    "session_start",
    "session_end",
    "merge_started",
    "merge_done",
    "merge_failed",
}
ROLES = ("mayor", "deacon", "witness", "refinery", "polecat", "crew")


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _files(town: DemoTown) -> list[Path]:
    out = []
    for top in (town.root, town.claude_projects_dir):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            out += [Path(dirpath) / f for f in sorted(filenames)]
    return out


def _normalize(town: DemoTown, text: str) -> str:
    """Transcripts hold absolute paths: make them workdir-independent."""
    return text.replace(str(town.workdir), "<WORKDIR>").replace(encode_cwd(town.workdir), "<ENC-WORKDIR>")


def _snapshot(town: DemoTown) -> dict[str, tuple[bytes, float]]:
    snap = {}
    for path in _files(town):
        rel = _normalize(town, path.relative_to(town.workdir).as_posix())
        data = path.read_bytes()
        snap[rel] = (_normalize(town, data.decode("utf-8", "replace")).encode(), path.stat().st_mtime)
    return snap


def _planted_occurs(town: DemoTown, value: str, rel: str) -> bool:
    text = town.path_of(rel).read_text(encoding="utf-8")
    escaped = json.dumps(value, ensure_ascii=False)[1:-1]
    go_escaped = escaped.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return value in text or escaped in text or go_escaped in text


def _load_formula(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)


def _formulas(town: DemoTown, pattern: str) -> dict[str, Path]:
    return {p.relative_to(town.root).as_posix(): p for p in sorted(town.root.glob(pattern))}


def _tiers(town: DemoTown) -> dict[str, dict[str, Path]]:
    first = town.clones[town.rigs[0]]
    tiers = {
        "embedded": _formulas(town, f"{first}/internal/formula/formulas/*.formula.*"),
        "town": _formulas(town, ".beads/formulas/*.formula.*"),
    }
    for rig in town.rigs:
        tiers[rig] = _formulas(town, f"{town.clones[rig]}/.beads/formulas/*.formula.*")
    return tiers


def _steps(formula: dict) -> list[dict]:
    return formula.get("steps") or formula.get("template") or []


def _has_cycle(steps: list[dict]) -> bool:
    graph = {s["id"]: list(s.get("needs", [])) for s in steps}
    state: dict[str, int] = {}

    def visit(n: str) -> bool:
        if state.get(n) == 1:
            return True
        if state.get(n) == 2 or n not in graph:
            return False
        state[n] = 1
        found = any(visit(m) for m in graph[n])
        state[n] = 2
        return found

    return any(visit(n) for n in graph)


def _read_jsonl(path: Path) -> tuple[list, list[str]]:
    """(parsed values, raw lines that do not parse)."""
    good, bad = [], []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            continue
        try:
            good.append(json.loads(line))
        except json.JSONDecodeError:
            bad.append(line)
    return good, bad


def _transcripts(town: DemoTown) -> dict[Path, list[dict]]:
    out = {}
    for path in sorted(town.claude_projects_dir.glob("*/*.jsonl")):
        good, _ = _read_jsonl(path)
        out[path] = good
    return out


# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def town(tmp_path_factory) -> DemoTown:
    return build_demo_town(tmp_path_factory.mktemp("town-a"), seed=7)


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> DemoTown:
    return build_demo_town(tmp_path_factory.mktemp("town-b-longer-name"), seed=7)


@pytest.fixture(scope="module")
def other_seed(tmp_path_factory) -> DemoTown:
    return build_demo_town(tmp_path_factory.mktemp("town-c"), seed=8)


@pytest.fixture(scope="module")
def clean_town(tmp_path_factory) -> DemoTown:
    return build_demo_town(tmp_path_factory.mktemp("town-clean"), seed=7, with_bad_inputs=False)


# ------------------------------------------------------------------------------------------------
# determinism
# ------------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_files_mtimes_and_commits(town, twin):
    a, b = _snapshot(town), _snapshot(twin)
    assert sorted(a) == sorted(b)
    for rel in a:
        assert a[rel][0] == b[rel][0], f"{rel} differs between two builds with the same seed"
        assert a[rel][1] == b[rel][1], f"{rel} has a different mtime"
    for rig in town.rigs:
        head_a = _git(town.repo(rig), "rev-parse", "HEAD")
        head_b = _git(twin.repo(rig), "rev-parse", "HEAD")
        assert head_a == head_b == town.heads[rig] == twin.heads[rig]
    assert [(p.kind, p.value) for p in town.planted] == [(p.kind, p.value) for p in twin.planted]
    assert [_normalize(town, r) for r, _ in town.bad_inputs] == [
        _normalize(twin, r) for r, _ in twin.bad_inputs
    ]


def test_different_seed_gives_different_content(town, other_seed):
    a, b = _snapshot(town), _snapshot(other_seed)
    common = set(a) & set(b)
    assert any(a[rel][0] != b[rel][0] for rel in common)
    export = "town/ledger/mayor/rig/.beads/issues.jsonl"
    assert a[export][0] != b[export][0]
    assert town.heads != other_seed.heads
    tokens = {k for k in KINDS if k.endswith(("_key", "_token"))}
    assert {p.value for p in town.planted if p.kind in tokens}.isdisjoint(
        {p.value for p in other_seed.planted if p.kind in tokens}
    )


def test_rebuild_replaces_the_earlier_town(tmp_path):
    first = build_demo_town(tmp_path, seed=3)
    (first.root / "stray.txt").write_text("left over")
    (first.claude_projects_dir / "stray-project").mkdir()
    again = build_demo_town(tmp_path, seed=3)
    assert not (again.root / "stray.txt").exists()
    assert not (again.claude_projects_dir / "stray-project").exists()
    assert again.heads == first.heads


def test_user_git_config_is_ignored(tmp_path, monkeypatch, town):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        "[commit]\n\tgpgsign = true\n[init]\n\tdefaultBranch = trunk\n"
        "[user]\n\tname = Someone Else\n\temail = else@nowhere.invalid\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    built = build_demo_town(tmp_path / "w", seed=7)
    assert built.heads == town.heads


def test_build_is_fast(tmp_path):
    start = time.perf_counter()
    build_demo_town(tmp_path, seed=11)
    assert time.perf_counter() - start < 10  # ~0.5 s normally; generous for slow CI machines


# ------------------------------------------------------------------------------------------------
# layout and rigs
# ------------------------------------------------------------------------------------------------


def test_layout(town):
    root = town.root
    assert town.root == town.workdir / "town"
    assert town.claude_projects_dir == town.workdir / "claude-projects"
    assert not (root / ".git").exists(), "the town root is not a git repo"
    for rel in (
        "CLAUDE.md",
        "AGENTS.md",
        "mayor/CLAUDE.md",
        "deacon/CLAUDE.md",
        ".beads/issues.jsonl",
        ".beads/routes.jsonl",
        ".events.jsonl",
        "logs/town.log",
    ):
        assert (root / rel).is_file(), rel
    assert len(town.rigs) >= 2
    for rig in town.rigs:
        r = town.repo(rig)
        assert r == root / rig / "mayor" / "rig"
        for rel in ("README.md", "CLAUDE.md", "AGENTS.md"):
            assert (r / rel).is_file(), f"{rig}/{rel}"
        assert list(r.glob(".claude/commands/*.md"))
        assert list(r.glob(".claude/skills/*/SKILL.md"))
        assert list(r.glob(".beads/formulas/*.formula.toml"))
        assert list(r.glob("**/*.py")) or list(r.glob("**/*.go"))
    first, second = town.repo(town.rigs[0]), town.repo(town.rigs[1])
    assert list(first.glob("internal/formula/formulas/*.formula.toml"))
    for role in ROLES:
        tmpl = first / f"internal/templates/roles/{role}.md.tmpl"
        assert tmpl.is_file() and "{{" in tmpl.read_text()
    assert (first / ".beads/issues.jsonl").is_file()
    for name in (
        "issues.jsonl",
        "dependencies.jsonl",
        "labels.jsonl",
        "comments.jsonl",
        "events.jsonl",
        "config.jsonl",
        "backup_state.json",
    ):
        assert (second / ".beads/backup" / name).is_file(), name
    routes = [json.loads(line) for line in (root / ".beads/routes.jsonl").read_text().splitlines()]
    by_path = {r["path"]: r["prefix"] for r in routes}
    assert by_path["."] == "hq-"
    assert all(by_path[town.clones[rig]].endswith("-") for rig in town.rigs)


def test_real_gas_town_layout(town):
    """architecture.md "Directory Structure": registry, rig directories that are not clones, the
    canonical clone, worktrees and crew clones with redirects, directives and overlays."""
    root = town.root
    registry = json.loads((root / "mayor/rigs.json").read_text())
    assert registry["version"] == 1 and sorted(registry["rigs"]) == sorted(town.rigs)
    assert json.loads((root / "mayor/town.json").read_text())["type"] == "town"
    for rig in town.rigs:
        assert not (root / rig / ".git").exists(), f"{rig} is a project container, not a clone"
        assert json.loads((root / rig / "config.json").read_text())["name"] == rig
        assert (root / rig / ".beads/redirect").read_text().strip() == "mayor/rig/.beads"
        assert (town.repo(rig) / ".git").is_dir()
        listed = _git(town.repo(rig), "worktree", "list", "--porcelain")
        worktrees = {
            Path(line.split(" ", 1)[1]) for line in listed.splitlines() if line.startswith("worktree ")
        }
        assert root / rig / "refinery" / "rig" in worktrees
        assert any(p.parent.parent == root / rig / "polecats" and p.name == rig for p in worktrees)
    kinds = Counter(town.copies.values())
    assert kinds == {"worktree": 5, "clone": 2}
    for rel, kind in town.copies.items():
        copy = root / rel
        assert (copy / ".git").is_file() if kind == "worktree" else (copy / ".git").is_dir()
        assert _git(copy, "rev-parse", "HEAD") == town.heads[rel.split("/")[0]]
        assert _git(copy, "status", "--porcelain") == "", f"{rel} has uncommitted changes"
        target = (copy / (copy / ".beads/redirect").read_text().strip()).resolve()
        assert target == (town.repo(rel.split("/")[0]) / ".beads").resolve()
        # The copies carry the tracked beads and formulas: the readers must not take them again.
        assert list(copy.glob(".beads/**/issues.jsonl")) and list(copy.glob(".beads/formulas/*.toml"))
    assert {p.name for p in (root / "directives").glob("*.md")} == {"polecat.md", "witness.md"}
    assert (root / town.rigs[0] / "directives/polecat.md").is_file()
    assert (root / town.rigs[1] / "directives/refinery.md").is_file()
    town_steps = {
        s["id"]
        for s in tomllib.loads((root / ".beads/formulas/mol-polecat-work.formula.toml").read_text())["steps"]
    }
    for overlay in (
        root / "formula-overlays/mol-polecat-work.toml",
        root / town.rigs[0] / "formula-overlays/mol-polecat-work.toml",
    ):
        overrides = tomllib.loads(overlay.read_text())["step-overrides"]
        assert overrides and {o["step_id"] for o in overrides} <= town_steps
        assert {o["mode"] for o in overrides} <= {"replace", "append", "skip"}


def test_rigs_are_git_repos_with_history(town):
    for rig in town.rigs:
        repo = town.repo(rig)
        assert _git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
        assert int(_git(repo, "rev-list", "--count", "HEAD")) >= 4
        assert _git(repo, "status", "--porcelain") == "", f"{rig} has uncommitted changes"
        assert re.fullmatch(r"[0-9a-f]{40}", town.heads[rig])


# ------------------------------------------------------------------------------------------------
# formulas
# ------------------------------------------------------------------------------------------------


def test_every_formula_type_appears_and_good_formulas_are_valid(town):
    bad = {rel for rel, _ in town.bad_inputs}
    types: Counter = Counter()
    untyped = 0
    suffixes = set()
    for paths in _tiers(town).values():
        for rel, path in paths.items():
            if rel in bad:
                continue
            f = _load_formula(path)
            suffixes.add(path.suffix)
            assert f["formula"] and isinstance(f["version"], int) and f["description"]
            untyped += "type" not in f
            kind = f.get("type", "workflow")
            types[kind] += 1
            if kind in ("workflow", "expansion"):
                steps = _steps(f)
                ids = {s["id"] for s in steps}
                assert steps and all(n in ids for s in steps for n in s.get("needs", [])), rel
                assert not _has_cycle(steps), rel
            if kind == "expansion":
                assert all("{target}" in s["id"] for s in f["template"])
                assert any(s.get("needs") for s in f["template"])
            if kind == "convoy":
                assert f["legs"] and f["synthesis"] and f["inputs"] and f["prompts"] and f["output"]
            if kind == "aspect":
                assert f["advice"] and f["pointcuts"] and all("glob" in p for p in f["pointcuts"])
                assert any("around" in a for a in f["advice"])
                assert any("before" in a or "after" in a for a in f["advice"])
            for name, spec in f.get("vars", {}).items():
                assert "description" in spec, f"{rel}: var {name}"
            used = set(re.findall(r"\{\{(\w+)\}\}", path.read_text()))
            assert used <= set(f.get("vars", {})) | set(f.get("inputs", {})), rel
    assert set(types) == {"workflow", "convoy", "expansion", "aspect"}
    assert untyped >= 1, "one workflow formula leaves `type` out"
    assert suffixes == {".toml", ".json"}


def test_shadowing_across_tiers(town):
    names = {
        tier: {_load_formula(p)["formula"] for rel, p in paths.items() if rel not in dict(town.bad_inputs)}
        for tier, paths in _tiers(town).items()
    }
    for rig in town.rigs:
        assert names[rig] & names["town"], f"{rig} shadows no town formula"
    assert names["town"] & names["embedded"], "the town shadows no embedded formula"


def test_formulas_show_gas_town_workflows(town):
    text = "\n".join(p.read_text() for paths in _tiers(town).values() for p in paths.values())
    for cmd in (
        "gt hook",
        "bd show {{issue}}",
        "bd close",
        "gt done",
        "gt mail send mayor/",
        "gt escalate",
        "gt mq list",
        "gt patrol",
        "gt convoy",
    ):
        assert cmd in text, cmd


def test_bad_formulas_are_bad_in_the_stated_way(town):
    reasons = dict(town.bad_inputs)
    by_reason = defaultdict(list)
    for rel, reason in reasons.items():
        by_reason[reason].append(rel)
    assert set(by_reason) == {
        "truncated_last_line",
        "needs_cycle",
        "unknown_step",
        "not_an_object",
        "invalid_toml",
    }
    (cycle,) = by_reason["needs_cycle"]
    assert cycle.startswith(".beads/formulas/")
    assert _has_cycle(_steps(tomllib.loads((town.root / cycle).read_text())))
    (unknown,) = by_reason["unknown_step"]
    assert unknown.split("/")[0] in town.rigs
    f = tomllib.loads((town.root / unknown).read_text())
    ids = {s["id"] for s in f["steps"]}
    assert any(n not in ids for s in f["steps"] for n in s.get("needs", []))
    (invalid,) = by_reason["invalid_toml"]
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads((town.root / invalid).read_text())
    (array,) = by_reason["not_an_object"]
    assert array == f"{town.clones[town.rigs[0]]}/.beads/issues.jsonl"
    rows, broken = _read_jsonl(town.root / array)
    assert not broken and sum(isinstance(r, list) for r in rows) == 1


# ------------------------------------------------------------------------------------------------
# beads
# ------------------------------------------------------------------------------------------------


def test_rig_beads_export(town):
    rows, _ = _read_jsonl(town.repo(town.rigs[0]) / ".beads/issues.jsonl")
    rows = [r for r in rows if isinstance(r, dict)]
    prefix = rows[0]["id"].split("-")[0] + "-"
    assert all(r["id"].startswith(prefix) for r in rows)
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == len(rows)
    for r in rows:
        assert {"id", "title", "status", "priority", "issue_type", "created_at", "updated_at"} <= set(r)
        assert 0 <= r["priority"] <= 4
    types = {r["issue_type"] for r in rows}
    assert {"bug", "feature", "task", "epic", "chore"} <= types
    assert {"merge-request", "agent"} & types
    tombstones = [r for r in rows if r["status"] == "tombstone"]
    assert len(tombstones) >= 3
    assert all({"deleted_at", "delete_reason", "original_type"} <= set(r) for r in tombstones)
    children = [r for r in rows if re.fullmatch(r".+\.\d+", r["id"])]
    assert len(children) >= 2
    for child in children:
        parent = child["id"].rsplit(".", 1)[0]
        assert parent in by_id
        assert any(
            d["type"] == "parent-child" and d["depends_on_id"] == parent for d in child["dependencies"]
        )
    dep_types = {d["type"] for r in rows for d in r.get("dependencies", [])}
    assert {"blocks", "parent-child", "related", "discovered-from"} <= dep_types
    for r in rows:
        for d in r.get("dependencies", []):
            assert {"issue_id", "depends_on_id", "type", "created_at", "created_by"} <= set(d)
        for c in r.get("comments", []):
            assert {"id", "author", "text", "created_at"} <= set(c)
    assert any(r.get("comments") for r in rows) and any(r.get("labels") for r in rows)
    assert any(r.get(k) for r in rows for k in ("design", "acceptance_criteria", "notes"))
    assert {"open", "closed", "in_progress", "hooked", "blocked"} <= {r["status"] for r in rows}


def test_town_beads(town):
    rows, broken = _read_jsonl(town.root / ".beads/issues.jsonl")
    assert not broken and rows and all(r["id"].startswith("hq-") for r in rows)
    assert {"convoy", "agent", "message"} <= {r["issue_type"] for r in rows}


def test_backup_dump(town):
    base = town.repo(town.rigs[1]) / ".beads/backup"
    issues, broken = _read_jsonl(base / "issues.jsonl")
    assert not broken and issues
    for row in issues:
        assert not {"labels", "dependencies", "comments"} & set(row)
        assert {"hook_bead", "wisp_type", "mol_type", "rig", "sender", "role_type", "content_hash"} <= set(
            row
        )
        assert re.fullmatch(r"[0-9a-f]{64}", row["content_hash"])
    ids = {r["id"] for r in issues}
    side = {
        name: _read_jsonl(base / f"{name}.jsonl")[0]
        for name in ("dependencies", "labels", "comments", "events", "config")
    }
    assert all(
        d["issue_id"] in ids and set(d) == {"issue_id", "depends_on_id", "type", "created_at", "created_by"}
        for d in side["dependencies"]
    )
    assert all(set(x) == {"issue_id", "label"} for x in side["labels"])
    assert all(set(c) == {"id", "issue_id", "author", "text", "created_at"} for c in side["comments"])
    assert {e["event_type"] for e in side["events"]} >= {
        "created",
        "status_changed",
        "updated",
        "closed",
        "label_added",
    }
    assert all(
        {"id", "issue_id", "event_type", "actor", "old_value", "new_value", "comment", "created_at"} <= set(e)
        for e in side["events"]
    )
    assert all(set(c) == {"key", "value"} for c in side["config"])
    state = json.loads((base / "backup_state.json").read_text())
    assert {"last_dolt_commit", "last_event_id", "timestamp", "counts"} <= set(state)
    assert state["counts"]["issues"] == len(issues)
    for name, rows in side.items():
        assert state["counts"][name] == len(rows)


# ------------------------------------------------------------------------------------------------
# events and town log
# ------------------------------------------------------------------------------------------------


def test_events_and_town_log(town):
    events, broken = _read_jsonl(town.root / ".events.jsonl")
    assert not broken and len(events) >= 20
    for e in events:
        assert set(e) == {"ts", "source", "type", "actor", "payload", "visibility"}
        assert e["source"] == "gt" and e["type"] in EVENT_TYPES
        assert e["visibility"] in ("audit", "feed", "both")
        assert isinstance(e["payload"], dict)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    seen = {e["type"] for e in events}
    assert {"sling", "hook", "done", "merge_done", "merge_failed", "session_start"} <= seen
    lines = (town.root / "logs/town.log").read_text().splitlines()
    assert len(lines) == len(events)
    pattern = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[(\w+)\] (\S+) .+$")
    assert all(pattern.match(line) and pattern.match(line).group(1) in EVENT_TYPES for line in lines)


# ------------------------------------------------------------------------------------------------
# transcripts
# ------------------------------------------------------------------------------------------------


def test_transcripts_parse_except_the_truncated_line(town):
    truncated = {town.path_of(rel) for rel, reason in town.bad_inputs if reason == "truncated_last_line"}
    assert len(truncated) == 1
    paths = sorted(town.claude_projects_dir.glob("*/*.jsonl"))
    assert len(paths) >= 6
    for path in paths:
        raw = path.read_text(encoding="utf-8")
        lines = raw.split("\n")
        if path in truncated:
            assert not raw.endswith("\n")
            *complete, last = lines
            with pytest.raises(json.JSONDecodeError):
                json.loads(last)
            assert len(complete) >= 5
            assert all(isinstance(json.loads(line), dict) for line in complete)
        else:
            assert raw.endswith("\n") and lines[-1] == ""
            assert all(isinstance(json.loads(line), dict) for line in lines[:-1])


def test_transcript_locations_and_roles(town):
    seen_roles = set()
    for path, lines in _transcripts(town).items():
        first = lines[0]
        cwd = first["cwd"]
        assert path.parent.name == encode_cwd(cwd)
        assert Path(cwd).is_relative_to(town.root)
        rel = Path(cwd).relative_to(town.root).parts
        role = {("mayor",): "mayor", ("deacon",): "deacon"}.get(rel) or (
            rel[1] if len(rel) == 2 else rel[1].rstrip("s")
        )
        seen_roles.add(role)
        assert first["type"] == "user" and first["parentUuid"] is None
        assert first["message"]["content"].startswith("# ")
        assert f"GT_ROLE={role}" in first["message"]["content"]
        assert path.stem == first["sessionId"]
        for line in lines:
            if "uuid" in line and "sessionId" in line:
                assert line["sessionId"] == first["sessionId"] and line["cwd"] == cwd
    assert {"mayor", "polecat", "witness", "refinery"} <= seen_roles
    polecats = [p for p in _transcripts(town) if "-polecats-" in p.parent.name]
    assert len(polecats) >= 2


def test_transcript_structure(town):
    all_lines = _transcripts(town)
    types = Counter(line["type"] for lines in all_lines.values() for line in lines)
    assert {"user", "assistant", "system", "summary"} <= set(types)
    assert {"progress", "attachment", "file-history-snapshot"} <= set(types)
    tools = Counter(
        b["name"]
        for lines in all_lines.values()
        for line in lines
        if line["type"] == "assistant"
        for b in line["message"]["content"]
        if b["type"] == "tool_use"
    )
    assert {"Bash", "Read", "Edit", "Task"} <= set(tools)
    for lines in all_lines.values():
        uuids = {line["uuid"] for line in lines if "uuid" in line}
        for line in lines:
            if line.get("parentUuid"):
                assert line["parentUuid"] in uuids
            if line["type"] == "summary":
                assert line["leafUuid"] in uuids
            if line["type"] == "assistant":
                msg = line["message"]
                assert msg["role"] == "assistant" and msg["model"] and "usage" in msg and "stop_reason" in msg
                for b in msg["content"]:
                    assert b["type"] in ("text", "thinking", "tool_use")
                    if b["type"] == "thinking":
                        assert b["signature"]
        # every tool_result answers a tool_use of the same session
        use_ids = {
            b["id"]
            for line in lines
            if line["type"] == "assistant"
            for b in line["message"]["content"]
            if b["type"] == "tool_use"
        }
        for line in lines:
            if line["type"] == "user" and isinstance(line["message"]["content"], list):
                for b in line["message"]["content"]:
                    if b["type"] == "tool_result":
                        assert b["tool_use_id"] in use_ids and isinstance(b["is_error"], bool)


def test_special_sessions(town):
    sessions = _transcripts(town)
    compacted = failed = sidechain = branched = 0
    for lines in sessions.values():
        types = {line["type"] for line in lines}
        if "summary" in types and any(line.get("subtype") == "compact_boundary" for line in lines):
            compacted += 1
        main = [
            line for line in lines if line["type"] in ("user", "assistant") and not line.get("isSidechain")
        ]
        last = main[-1]
        if (
            last["type"] == "user"
            and isinstance(last["message"]["content"], list)
            and last["message"]["content"][0].get("text") == "[Request interrupted by user]"
        ):
            before = main[-2]["message"]["content"]
            assert before[0]["type"] == "tool_result" and before[0]["is_error"] is True
            failed += 1
        side = [line for line in lines if line.get("isSidechain")]
        if side:
            assert side[0]["parentUuid"] is None
            task_ids = {
                b["id"]
                for line in lines
                if line["type"] == "assistant"
                for b in line["message"]["content"]
                if b["type"] == "tool_use" and b["name"] == "Task"
            }
            rejoin = [
                line
                for line in main
                if line["type"] == "user"
                and isinstance(line["message"]["content"], list)
                and any(b.get("tool_use_id") in task_ids for b in line["message"]["content"])
            ]
            assert rejoin and not rejoin[0]["isSidechain"]
            sidechain += 1
        children = Counter(
            line["parentUuid"] for line in lines if line["type"] == "user" and line.get("parentUuid")
        )
        branched += any(n > 1 for n in children.values())
    assert compacted >= 1 and failed >= 1 and sidechain >= 1 and branched >= 1


# ------------------------------------------------------------------------------------------------
# planted secrets and personal data
# ------------------------------------------------------------------------------------------------


def test_every_planted_value_occurs_in_its_file(town):
    assert {p.kind for p in town.planted} == set(KINDS)
    for p in town.planted:
        assert town.path_of(p.path).is_file(), p.path
        assert _planted_occurs(town, p.value, p.path), f"{p.kind} not found in {p.path}"
    places = {p.path.split("/")[0] for p in town.planted}
    assert "claude-projects" in places and ".events.jsonl" in places
    paths = {p.path for p in town.planted}
    assert any(x.endswith(".formula.toml") for x in paths)
    assert any(x.endswith("CLAUDE.md") for x in paths)
    assert any(x.endswith("issues.jsonl") for x in paths)


def test_planted_values_have_realistic_shapes(town):
    shapes = {
        "aws_access_key": r"AKIA[A-Z0-9]{16}",
        "aws_secret_key": r"[A-Za-z0-9/+]{40}",
        "hf_token": r"hf_[A-Za-z]{34}",
        "github_token": r"ghp_[A-Za-z0-9]{36}",
        "github_fine_grained_token": r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}",
        "github_oauth_token": r"gho_[A-Za-z0-9]{36}",
        "anthropic_key": r"sk-ant-api03-[\w-]+",
        "openai_key": r"sk-proj-[\w-]+",
        "slack_token": r"xoxb-\d+-\d+-\w+",
        "stripe_key": r"sk_live_\w{24,}",
        "google_api_key": r"AIza[\w-]{35}",
        "npm_token": r"npm_[A-Za-z0-9]{36}",
        "pypi_token": r"pypi-AgEIcHlwaS5vcmc[\w-]{50,}",
        "pem_private_key": r"-----BEGIN RSA PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+\n"
        r"-----END RSA PRIVATE KEY-----",
        "openssh_private_key": r"-----BEGIN OPENSSH PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+\n"
        r"-----END OPENSSH PRIVATE KEY-----",
        "jwt": r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+",
        "email": r"[\w.+-]+@[\w-]+(\.[\w-]+)+",
        "public_ipv4": r"\d{1,3}(\.\d{1,3}){3}",
        "home_path_user": r"/(home|Users)/\w+(/.*)?",
    }
    for p in town.planted:
        if p.kind in shapes:
            assert re.fullmatch(shapes[p.kind], p.value), (p.kind, p.value)
    contexts = {p.kind: p.context for p in town.planted if p.context}
    assert contexts["password_in_url"].startswith(("postgres://", "mysql://"))
    assert contexts["password_cli_flag"].startswith("--password=")
    assert contexts["password_env"].startswith("DB_PASSWORD=")
    assert contexts["password_json_key"].startswith('"password": "')


def test_gas_town_strings_that_must_survive_scrubbing_are_plentiful(town):
    text = "\n".join(
        p.read_text(encoding="utf-8") for p in _files(town) if p.suffix in (".jsonl", ".md", ".toml")
    )
    assert len(re.findall(r"\b(?:le|co|hq)-[a-z0-9]{3,5}(?:\.\d+)?\b", text)) > 50
    assert re.search(r"\b[0-9a-f]{40}\b", text)
    assert re.search(r"\b[0-9a-f]{64}\b", text)
    assert re.search(r"\b[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\b", text)
    for needle in ("127.0.0.1", "GT_ROLE", "mol-polecat-work", "mol-witness-patrol"):
        assert needle in text


# ------------------------------------------------------------------------------------------------
# without bad inputs
# ------------------------------------------------------------------------------------------------


def test_without_bad_inputs_every_file_is_well_formed(clean_town, town):
    assert clean_town.bad_inputs == []
    for paths in _tiers(clean_town).values():
        for path in paths.values():
            f = _load_formula(path)
            steps = _steps(f)
            ids = {s["id"] for s in steps}
            assert all(n in ids for s in steps for n in s.get("needs", [])), path
            assert not _has_cycle(steps), path
    for path in _files(clean_town):
        if path.suffix == ".jsonl":
            raw = path.read_text(encoding="utf-8")
            assert raw.endswith("\n"), path
            assert all(isinstance(json.loads(line), dict) for line in raw.splitlines() if line.strip()), path
    assert [(p.kind, p.value) for p in clean_town.planted] == [(p.kind, p.value) for p in town.planted]
    for p in clean_town.planted:
        assert _planted_occurs(clean_town, p.value, p.path)
    bad_paths = {_normalize(town, rel) for rel, _ in town.bad_inputs}
    clean_files = {
        _normalize(clean_town, p.relative_to(clean_town.root).as_posix())
        for p in _files(clean_town)
        if p.is_relative_to(clean_town.root)
    }
    assert not {b for b in bad_paths if b.endswith(".toml")} & clean_files


def test_conftest_fixture_builds_the_same_town(demo_town, town):
    assert demo_town.heads == town.heads
    assert [(p.kind, p.value) for p in demo_town.planted] == [(p.kind, p.value) for p in town.planted]
