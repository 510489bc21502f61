"""Claude Code transcripts: tree rebuild, blocks, roles, outcomes, bad input, exclusion, streaming."""

from __future__ import annotations

import json
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest

from gastown_ft.config import TownConfig
from gastown_ft.corpus import transcripts as tr
from gastown_ft.corpus.documents import ReadLog
from gastown_ft.corpus.scan import TownScan
from gastown_ft.corpus.transcripts import encode_project_dir, read_transcripts

SESSION = "1a2b3c4d-0000-4000-8000-000000000001"


# -- building towns and transcripts by hand -------------------------------------------------------------
def make_town(tmp_path: Path, **cfg) -> tuple[TownConfig, Path, Path]:
    town = tmp_path / "town"
    for d in (
        "mayor",
        "deacon/dogs/alpha",
        "gastown/polecats/nux",
        "gastown/crew/max",
        "gastown/witness",
        "gastown/refinery/rig",
        "gastown/src",
        "secret/polecats/slit",
    ):
        (town / d).mkdir(parents=True, exist_ok=True)
    projects = tmp_path / "claude" / "projects"
    projects.mkdir(parents=True)
    config = TownConfig(root=town, claude_projects_dir=projects, **cfg)
    return config, town, projects


def line(
    kind: str,
    uuid: str | None,
    parent: str | None,
    content=None,
    *,
    cwd: Path | str = "/nowhere",
    side: bool = False,
    session: str = SESSION,
    **extra,
) -> dict:
    obj: dict = {
        "parentUuid": parent,
        "isSidechain": side,
        "userType": "external",
        "cwd": str(cwd),
        "sessionId": session,
        "version": "2.0.14",
        "gitBranch": "main",
        "type": kind,
        "timestamp": "2026-01-02T03:04:05.000Z",
    }
    if uuid is not None:
        obj["uuid"] = uuid
    if kind == "user":
        obj["message"] = {"role": "user", "content": content}
    elif kind == "assistant":
        obj["message"] = {
            "id": extra.pop("message_id", f"msg_{uuid}"),
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": content,
            "stop_reason": None,
            "usage": {"input_tokens": 3, "output_tokens": 5},
        }
    obj.update(extra)
    return obj


def text(t: str) -> list[dict]:
    return [{"type": "text", "text": t}]


def tool_use(tid: str, name: str = "Bash", **inp) -> list[dict]:
    return [{"type": "tool_use", "id": tid, "name": name, "input": inp or {"command": "ls"}}]


def tool_result(tid: str, out: str = "ok", is_error: bool = False) -> list[dict]:
    return [{"type": "tool_result", "tool_use_id": tid, "content": out, "is_error": is_error}]


def write_session(
    projects: Path, cwd: Path | str, lines: list, name: str = SESSION, tail: bytes = b""
) -> Path:
    d = projects / encode_project_dir(cwd)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.jsonl"
    with open(path, "wb") as fh:
        for obj in lines:
            fh.write(obj if isinstance(obj, bytes) else json.dumps(obj).encode() + b"\n")
        fh.write(tail)
    return path


def read(config: TownConfig) -> tuple[list, ReadLog]:
    log = ReadLog()
    docs = list(read_transcripts(TownScan(config), log))
    return docs, log


def uuids(doc) -> list[str]:
    return [m["uuid"] for m in doc.meta["messages"]]


def reasons(log: ReadLog) -> list[tuple[str, int | None]]:
    return sorted((q.reason, q.line) for q in log.quarantined)


# -- tree ---------------------------------------------------------------------------------------------------
def test_main_thread_sidechains_and_abandoned_branch(tmp_path):
    config, town, projects = make_town(tmp_path)
    cwd = town / "gastown" / "polecats" / "nux"
    write_session(
        projects,
        cwd,
        [
            {"type": "summary", "summary": "Earlier work on gt-abc", "leafUuid": "u0"},
            line("user", "u1", None, "Fix gt-abc please", cwd=cwd),
            line(
                "assistant", "a1", "u1", text("Looking.") + tool_use("t1", command="go test ./..."), cwd=cwd
            ),
            line(
                "progress", "p1", "a1", cwd=cwd, data={"type": "hook_progress"}
            ),  # a side leaf, not a branch
            line("user", "r1", "a1", tool_result("t1", "FAIL"), cwd=cwd),
            line("assistant", "a2", "r1", text("first try, abandoned"), cwd=cwd),  # retried branch
            line("user", "s1", None, "Sub-agent: search the code", cwd=cwd, side=True),
            line("assistant", "s2", "s1", text("found it in mail.go"), cwd=cwd, side=True),
            line("user", "x1", None, "Second sub-agent", cwd=cwd, side=True),
            line("assistant", "x2", "x1", text("done"), cwd=cwd, side=True),
            line("assistant", "a3", "r1", text("Fixed; tests pass."), cwd=cwd),  # the kept retry
            {"type": "file-history-snapshot", "messageId": "m", "snapshot": {}},
        ],
    )
    docs, log = read(config)
    assert not log.quarantined
    main = [d for d in docs if d.kind == "main"]
    side = [d for d in docs if d.kind == "sidechain"]
    assert len(main) == 1 and len(side) == 2
    m = main[0]
    assert uuids(m) == ["u1", "a1", "r1", "a3"]
    assert "abandoned" not in m.text and "Sub-agent" not in m.text
    assert m.meta["thread"] == "main" and m.key == f"{SESSION}:main:0"
    assert m.meta["left_out_lines"] == 2 and m.meta["left_out_branches"] == 1
    assert m.meta["summaries"] == [{"summary": "Earlier work on gt-abc", "leaf_uuid": "u0"}]
    assert m.meta["line_counts"] == {
        "summary": 1,
        "user": 4,
        "assistant": 5,
        "progress": 1,
        "file-history-snapshot": 1,
    }
    assert m.meta["outcome"] == "ok" and m.meta["compacted"] is False
    assert m.meta["model"] == "claude-sonnet-4-5" and m.meta["git_branch"] == "main"
    assert m.title == "polecat nux session 1a2b3c4d… (main, part 1)"
    assert [d.meta["thread"] for d in side] == ["sidechain:s1", "sidechain:x1"]
    assert [uuids(d) for d in side] == [["s1", "s2"], ["x1", "x2"]]
    assert side[0].key == f"{SESSION}:sidechain:s1:0" and "Fix gt-abc" not in side[0].text
    fl = m.meta["file_lines"]
    assert fl["total"] == 12 and fl["on_threads"] == 8 and fl["left_out"] == 2 and fl["no_uuid"] == 2
    assert log.files_read == 1


def test_compaction_boundary_starts_a_new_context_on_the_same_thread(tmp_path):
    config, town, projects = make_town(tmp_path)
    cwd = town / "mayor"
    write_session(
        projects,
        cwd,
        [
            line("user", "u1", None, "plan the convoy", cwd=cwd),
            line("assistant", "a1", "u1", text("planned"), cwd=cwd),
            line(
                "system",
                "c1",
                None,
                cwd=cwd,
                subtype="compact_boundary",
                content="Conversation compacted",
                logicalParentUuid="a1",
                compactMetadata={"trigger": "auto", "preTokens": 150000},
            ),
            line(
                "user",
                "u2",
                "c1",
                "This session is being continued. Summary: ...",
                cwd=cwd,
                isCompactSummary=True,
            ),
            line("assistant", "a2", "u2", text("continuing"), cwd=cwd),
        ],
    )
    docs, _ = read(config)
    # One thread, two contexts: the segment after the boundary starts with what the model saw.
    assert [uuids(d) for d in docs] == [["u1", "a1"], ["c1", "u2", "a2"]]
    assert {d.meta["thread"] for d in docs} == {"main"} and [d.meta["epoch"] for d in docs] == [0, 1]
    assert all(d.meta["compacted"] is True and d.role == "mayor" for d in docs)
    after = docs[1].meta["messages"]
    assert after[0]["subtype"] == "compact_boundary"
    assert after[1]["role"] == "context" and after[1]["content"][0]["kind"] == "compact_summary"
    assert docs[1].meta["context"] == {
        "compaction": {"trigger": "auto", "preTokens": 150000},
        "preserved": [],
    }


def test_subagent_file_holds_only_sidechains(tmp_path):
    config, town, projects = make_town(tmp_path)
    cwd = town / "gastown" / "crew" / "max"
    d = projects / encode_project_dir(cwd) / SESSION / "subagents"
    d.mkdir(parents=True)
    with open(d / "agent-a1b2c3.jsonl", "w") as fh:
        for obj in (
            line("user", "s1", None, "find the bug", cwd=cwd, side=True),
            line("assistant", "s2", "s1", text("found"), cwd=cwd, side=True),
        ):
            fh.write(json.dumps(obj) + "\n")
    docs, _ = read(config)
    assert [(doc.kind, doc.meta["thread"]) for doc in docs] == [("sidechain", "sidechain:s1")]
    assert docs[0].path == f"claude-projects/{encode_project_dir(cwd)}/{SESSION}/subagents/agent-a1b2c3.jsonl"
    assert docs[0].role == "crew" and docs[0].meta["agent"] == "max"


# -- blocks ---------------------------------------------------------------------------------------------------
def test_tool_blocks_stay_structured(tmp_path):
    config, town, projects = make_town(tmp_path)
    cwd = town / "gastown" / "witness"
    write_session(
        projects,
        cwd,
        [
            line(
                "user",
                "u1",
                None,
                [
                    {"type": "text", "text": "check polecats"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo" * 100},
                    },
                ],
                cwd=cwd,
            ),
            line(
                "assistant",
                "a1",
                "u1",
                [
                    {
                        "type": "thinking",
                        "thinking": "Which polecats are stale?",
                        "signature": "EqQBCkYIBxgCKkB" * 50,
                    }
                ],
                cwd=cwd,
                message_id="msg_1",
            ),
            line(
                "assistant",
                "a2",
                "a1",
                tool_use("toolu_1", command="gt polecat list gastown"),
                cwd=cwd,
                message_id="msg_1",
            ),
            line(
                "user",
                "r1",
                "a2",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "is_error": False,
                        "content": [
                            {"type": "text", "text": "nux  working  gt-abc"},
                            {"type": "image", "source": {"data": "xx"}},
                        ],
                    }
                ],
                cwd=cwd,
                toolUseResult={"stdout": "nux  working  gt-abc", "stderr": ""},
            ),
            line("assistant", "a3", "r1", text("All polecats are healthy."), cwd=cwd),
        ],
    )
    docs, _ = read(config)
    (doc,) = docs
    msgs = doc.meta["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]  # a1+a2 joined
    assert msgs[0]["content"][1] == {"type": "image", "placeholder": True, "media_type": "image/png"}
    (call,) = msgs[1]["content"]  # thinking is never kept: the thinking-only line a1 adds nothing
    assert call == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "Bash",
        "input": {"command": "gt polecat list gastown"},
    }
    assert msgs[1]["uuid"] == "a2" and msgs[1]["message_id"] == "msg_1"
    assert msgs[2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": "nux  working  gt-abc\n[image]",
            "is_error": False,
            "images": 1,
        }
    ]
    assert "EqQBCkYIBxgCKkB" not in json.dumps(doc.meta) and "iVBORw0KGgo" not in doc.text
    assert "stale" not in doc.text and "stale" not in json.dumps(doc.meta)
    assert "assistant: [tool_use Bash] " in doc.text
    assert '[tool_use Bash] {"command": "gt polecat list gastown"}' in doc.text
    assert "user: [tool_result] nux  working  gt-abc" in doc.text
    assert doc.role == "witness" and doc.rig == "gastown"


def test_long_blocks_are_cut_and_marked(tmp_path):
    config, town, projects = make_town(tmp_path)
    cwd = town / "mayor"
    big = "x" * (tr.MAX_BLOCK_CHARS + 500)
    write_session(
        projects,
        cwd,
        [
            line("user", "u1", None, "go", cwd=cwd),
            line("assistant", "a1", "u1", tool_use("t1", name="Write", file_path="/a", content=big), cwd=cwd),
            line("user", "r1", "a1", tool_result("t1", big), cwd=cwd),
        ],
    )
    (doc,) = read(config)[0]
    call = doc.meta["messages"][1]["content"][0]
    assert call["truncated"] is True and len(call["input"]["content"]) < 3000
    res = doc.meta["messages"][2]["content"][0]
    assert res["truncated"] is True and "[truncated 500 chars]" in res["content"]


# -- roles ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rel, role, rig, agent",
    [
        ("mayor", "mayor", None, None),
        ("deacon", "deacon", None, None),
        ("deacon/dogs/alpha", "dog", None, "alpha"),
        ("gastown/witness", "witness", "gastown", None),
        ("gastown/refinery/rig", "refinery", "gastown", None),
        ("gastown/polecats/nux", "polecat", "gastown", "nux"),
        ("gastown/crew/max", "crew", "gastown", "max"),
        ("gastown/src", None, "gastown", None),
    ],
)
def test_role_and_rig_from_cwd(tmp_path, rel, role, rig, agent):
    config, town, projects = make_town(tmp_path)
    cwd = town / rel
    write_session(
        projects,
        cwd,
        [line("user", "u1", None, "hello", cwd=cwd), line("assistant", "a1", "u1", text("hi"), cwd=cwd)],
    )
    (doc,) = read(config)[0]
    assert (doc.role, doc.rig, doc.meta["agent"]) == (role, rig, agent)
    assert doc.meta["role_source"] == ("cwd" if role else None)
    assert doc.meta["cwd"] == str(cwd)


@pytest.mark.parametrize(
    "primed, role, rig, agent",
    [
        ("export GT_ROLE=gastown/polecats/furiosa\n# Polecat Context", "polecat", "gastown", "furiosa"),
        ("# Witness Context\n\n## Your Role: WITNESS (Rig Manager for gastown)", "witness", "gastown", None),
        (
            "# Polecat Context\nYou are polecat **nux** — a worker agent in the gastown rig.",
            "polecat",
            "gastown",
            "nux",
        ),
        ("GT_ROLE=deacon", "deacon", None, None),
    ],
)
def test_role_from_primed_text(tmp_path, primed, role, rig, agent):
    config, town, projects = make_town(tmp_path)
    # The session ran at the town root: the cwd says nothing, the `gt prime` output does.
    write_session(
        projects,
        town,
        [
            line(
                "user",
                "u1",
                None,
                [{"type": "text", "text": f"<system-reminder>{primed}</system-reminder>"}],
                cwd=town,
                isMeta=True,
            ),
            line("user", "u2", "u1", "start patrol", cwd=town),
            line("assistant", "a1", "u2", text("ok"), cwd=town),
        ],
    )
    (doc,) = read(config)[0]
    assert (doc.role, doc.rig, doc.meta["agent"], doc.meta["role_source"]) == (
        role,
        rig,
        agent,
        "primed_text",
    )
    assert doc.meta["messages"][0]["is_meta"] is True


def test_outside_the_town_needs_all_projects(tmp_path):
    config, town, projects = make_town(tmp_path)
    other = tmp_path / "elsewhere" / "project"
    write_session(
        projects,
        other,
        [
            line("user", "u1", None, "GT_ROLE=mayor\nhello", cwd=other),
            line("assistant", "a1", "u1", text("hi"), cwd=other),
        ],
    )
    assert read(config)[0] == []
    config.transcripts_all_projects = True
    (doc,) = read(config)[0]
    assert doc.role == "mayor" and doc.rig is None


def test_commit_is_the_rigs_head(tmp_path):
    config, town, projects = make_town(tmp_path)
    rig = town / "gastown"
    git = ["git", "-C", str(rig), "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (rig / "README.md").write_text("rig\n")
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    cwd = rig / "polecats" / "nux"
    write_session(projects, cwd, [line("user", "u1", None, "hi", cwd=cwd)])
    (doc,) = read(config)[0]
    assert doc.commit == head


# -- outcomes ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ending, outcome",
    [
        ([line("assistant", "a2", "r1", text("All done."))], "ok"),
        (
            [
                line("assistant", "a2", "r1", tool_use("t2", command="bd show gt-abc")),
                line("user", "r2", "a2", tool_result("t2", "no such issue", is_error=True)),
                line("assistant", "a3", "r2", tool_use("t3", command="bd list")),
                line("user", "r3", "a3", tool_result("t3", "gt-abc")),
                line("assistant", "a4", "r3", text("Found it.")),
            ],
            "ok",
        ),
        (
            [
                line("assistant", "a2", "r1", tool_use("t2", command="go test ./...")),
                line("user", "r2", "a2", tool_result("t2", "FAIL", is_error=True)),
                line("assistant", "a3", "r2", text("Tests still fail; stopping.")),
            ],
            "error",
        ),
        (
            [
                line("assistant", "a2", "r1", tool_use("t2", command="go build")),
                line("user", "r2", "a2", tool_result("t2", "build failed", is_error=True)),
            ],
            "error",
        ),
        ([line("assistant", "a2", "r1", text("API Error: 529 Overloaded"), isApiErrorMessage=True)], "error"),
        (
            [
                line("assistant", "a2", "r1", tool_use("t2", command="make")),
                line(
                    "user", "r2", "a2", tool_result("t2", "The user doesn't want to proceed", is_error=True)
                ),
                line("user", "r3", "r2", text("[Request interrupted by user for tool use]")),
            ],
            "interrupted",
        ),
        ([line("assistant", "a2", "r1", tool_use("t2", command="gt done"))], "abandoned"),
    ],
)
def test_outcome_labels(tmp_path, ending, outcome):
    config, town, projects = make_town(tmp_path)
    start = [
        line("user", "u1", None, "work gt-abc"),
        line("assistant", "a1", "u1", tool_use("t1", command="bd show gt-abc")),
        line("user", "r1", "a1", tool_result("t1", "gt-abc: fix it")),
    ]
    cwd = town / "gastown" / "polecats" / "nux"  # membership is by cwd: the lines must say it
    write_session(projects, cwd, [{**obj, "cwd": str(cwd)} for obj in start + ending])
    (doc,) = read(config)[0]
    assert doc.meta["outcome"] == outcome


# -- bad input -------------------------------------------------------------------------------------------------------
def test_bad_lines_are_quarantined_and_the_rest_read(tmp_path):
    config, town, projects = make_town(tmp_path)
    cwd = town / "gastown" / "polecats" / "nux"
    good = json.dumps(line("user", "u2", "a1", "caf\u00e9 PLACEHOLDER", cwd=cwd)).encode()
    bad_utf8 = good.replace(b"PLACEHOLDER", b"\xff\xfe broken") + b"\n"
    path = write_session(
        projects,
        cwd,
        [
            line("user", "u1", None, "start", cwd=cwd, someNewField={"x": 1}),  # 1 unknown field
            line("assistant", "a1", "u1", text("ok"), cwd=cwd),  # 2
            bad_utf8,  # 3 bad UTF-8, kept
            b"[1, 2, 3]\n",  # 4 not an object
            b'{"type": "user", "uuid": \n',  # 5 invalid JSON
            line("hook-telemetry", "h1", "u2", cwd=cwd),  # 6 unknown type
            line("assistant", "a2", "h1", text("finished"), cwd=cwd),  # 7
        ],
        tail=b'{"parentUuid": "a2", "type": "assistant", "mess',
    )  # 8 truncated
    docs, log = read(config)
    assert reasons(log) == [("invalid_json", 5), ("not_an_object", 4), ("truncated_last_line", 8)]
    assert all(q.path == f"claude-projects/{encode_project_dir(cwd)}/{path.name}" for q in log.quarantined)
    (doc,) = docs
    assert uuids(doc) == ["u1", "a1", "u2", "a2"]
    assert "caf\u00e9 \ufffd\ufffd broken" in doc.text
    assert doc.meta["unknown_types"] == ["hook-telemetry"]
    fl = doc.meta["file_lines"]
    assert fl == {
        "total": 8,
        "on_threads": 5,
        "left_out": 0,
        "no_uuid": 0,
        "duplicate_uuid": 0,
        "quarantined": 3,
        "bad_utf8": 1,
        "orphans": 0,
    }


def test_binary_empty_and_whitespace_files(tmp_path):
    config, town, projects = make_town(tmp_path)
    d = projects / encode_project_dir(town / "mayor")
    d.mkdir(parents=True)
    (d / "bin.jsonl").write_bytes(b"\x00\x01\x02PNG\x00" * 100)
    (d / "empty.jsonl").write_bytes(b"")
    (d / "blank.jsonl").write_bytes(b"\n  \n\n")
    (d / "garbage.jsonl").write_bytes(b"not json\n")
    (d / "gone.jsonl").symlink_to(d / "does-not-exist.jsonl")
    (d / "loop").symlink_to(d)
    write_session(projects, town / "mayor", [line("user", "u1", None, "hi", cwd=town / "mayor")])
    docs, log = read(config)
    assert len(docs) == 1
    got = sorted((Path(q.path).name, q.reason) for q in log.quarantined)
    assert got == [
        ("bin.jsonl", "binary_file"),
        ("blank.jsonl", "empty_file"),
        ("empty.jsonl", "empty_file"),
        ("garbage.jsonl", "invalid_json"),
        ("garbage.jsonl", "no_valid_lines"),
        ("gone.jsonl", "vanished_or_broken_link"),
        ("loop", "symlink_loop"),
    ]


def test_line_too_large_is_not_loaded_and_the_thread_stays_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(tr, "MAX_LINE_BYTES", 20_000)
    monkeypatch.setattr(tr, "LINE_CHUNK", 4096)
    config, town, projects = make_town(tmp_path)
    cwd = town / "mayor"
    write_session(
        projects,
        cwd,
        [
            line("user", "u1", None, "read the log", cwd=cwd),
            line("assistant", "a1", "u1", tool_use("t1", command="cat big.log"), cwd=cwd),
            line("user", "r1", "a1", tool_result("t1", "y" * 50_000), cwd=cwd),
            line("assistant", "a2", "r1", text("The log is long."), cwd=cwd),
        ],
    )
    docs, log = read(config)
    assert reasons(log) == [("line_too_large", 3)]
    (doc,) = docs
    assert uuids(doc) == ["u1", "a1", "r1", "a2"]
    assert doc.meta["messages"][2]["type"] == "omitted" and "yyyy" not in doc.text
    assert doc.meta["file_lines"]["quarantined"] == 1 and doc.meta["source_lines"] == 3


# -- where transcripts come from -----------------------------------------------------------------------------------
def test_exclusion_by_glob_and_by_rig(tmp_path):
    config, town, projects = make_town(tmp_path, exclude=["*/2222*.jsonl"], exclude_rigs=["secret"])
    for name, rel in (
        ("11111111-0000-4000-8000-000000000000", "mayor"),
        ("22222222-0000-4000-8000-000000000000", "mayor"),
        ("33333333-0000-4000-8000-000000000000", "secret/polecats/slit"),
    ):
        cwd = town / rel
        write_session(projects, cwd, [line("user", "u1", None, "hi", cwd=cwd, session=name)], name=name)
    docs, log = read(config)
    assert [d.meta["session_id"][:4] for d in docs] == ["1111"]
    assert log.skipped["excluded"] == 1 and log.skipped["excluded_rig"] == 1


def test_in_town_and_extra_path_transcripts(tmp_path):
    extra = tmp_path / "archive"
    extra.mkdir()
    config, town, projects = make_town(tmp_path, extra_paths=[extra])
    cwd = town / "gastown" / "crew" / "max"
    inside = town / "gastown" / "crew" / "max" / ".claude" / "projects" / "p"
    inside.mkdir(parents=True)
    with open(inside / "s-in-town.jsonl", "w") as fh:
        fh.write(json.dumps(line("user", "u1", None, "in town", cwd=cwd, session="in-town")) + "\n")
    with open(extra / "old-session.jsonl", "w") as fh:
        fh.write(json.dumps(line("user", "u1", None, "archived", cwd=cwd, session="archived")) + "\n")
    (extra / "issues.jsonl").write_text(json.dumps({"id": "gt-1", "title": "not a transcript"}) + "\n")
    docs, log = read(config)
    assert sorted(d.meta["session_id"] for d in docs) == ["archived", "in-town"]
    assert {d.path for d in docs} == {
        "gastown/crew/max/.claude/projects/p/s-in-town.jsonl",
        (extra / "old-session.jsonl").as_posix(),
    }
    assert not log.quarantined


def test_segments(tmp_path, monkeypatch):
    config, town, projects = make_town(tmp_path)
    cwd = town / "gastown" / "refinery" / "rig"
    lines, parent = [], None
    for i in range(450):
        kind = "user" if i % 2 == 0 else "assistant"
        content = f"message {i}" if kind == "user" else text(f"reply {i}")
        lines.append(line(kind, f"m{i}", parent, content, cwd=cwd))
        parent = f"m{i}"
    write_session(projects, cwd, lines)
    docs, _ = read(config)
    assert [d.meta["message_count"] for d in docs] == [200, 200, 50]
    assert [d.key for d in docs] == [f"{SESSION}:main:{i}" for i in range(3)]
    assert docs[2].title == "refinery session 1a2b3c4d… (main, part 3)"
    assert sum(d.meta["source_lines"] for d in docs) == 450
    assert len({d.doc_id for d in docs}) == 3

    monkeypatch.setattr(tr, "SEGMENT_CHARS", 1000)
    docs, _ = read(config)
    assert all(len(d.text) <= 1000 + 100 for d in docs) and sum(d.meta["message_count"] for d in docs) == 450


def test_reader_is_deterministic(tmp_path):
    config, town, projects = make_town(tmp_path)
    cwd = town / "mayor"
    write_session(
        projects,
        cwd,
        [line("user", "u1", None, "hi", cwd=cwd), line("assistant", "a1", "u1", text("hello"), cwd=cwd)],
    )
    a = [d.doc_id for d in read(config)[0]]
    b = [d.doc_id for d in read(config)[0]]
    assert a == b and len(a) == 1


# -- streaming --------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_50mb_transcript_streams_in_bounded_memory(tmp_path):
    config, town, projects = make_town(tmp_path, max_file_mb=512)
    cwd = town / "gastown" / "polecats" / "nux"
    d = projects / encode_project_dir(cwd)
    d.mkdir(parents=True)
    path = d / f"{SESSION}.jsonl"
    output = ("PASS ok  \tgithub.com/steveyegge/gastown/internal/cmd\t0.41s\n" * 800)[:40_000]
    n_lines = 0
    with open(path, "w") as fh:
        fh.write(json.dumps(line("user", "u0", None, "run the tests over and over", cwd=cwd)) + "\n")
        n_lines += 1
        parent, i = "u0", 0
        while fh.tell() < 50 * 1024 * 1024:
            fh.write(
                json.dumps(
                    line("assistant", f"a{i}", parent, tool_use(f"t{i}", command="go test ./..."), cwd=cwd)
                )
                + "\n"
            )
            fh.write(json.dumps(line("user", f"r{i}", f"a{i}", tool_result(f"t{i}", output), cwd=cwd)) + "\n")
            parent, i, n_lines = f"r{i}", i + 1, n_lines + 2
    size = path.stat().st_size
    assert size >= 50 * 1024 * 1024

    scan = TownScan(config)
    log = ReadLog()
    docs = messages = source_lines = 0
    last = None
    started = time.perf_counter()
    tracemalloc.start()
    try:
        for doc in read_transcripts(scan, log):
            docs += 1
            messages += doc.meta["message_count"]
            source_lines += doc.meta["source_lines"]
            last = doc.meta
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    print(
        f"\n50 MB transcript: {size / 2**20:.1f} MiB, {n_lines} lines, {docs} documents, "
        f"{elapsed:.1f} s, tracemalloc peak {peak / 2**20:.1f} MiB"
    )
    assert not log.quarantined
    assert source_lines == n_lines == messages == last["file_lines"]["total"] == last["thread_lines"]
    assert last["outcome"] == "ok"
    assert peak < 40 * 2**20 and peak < size / 4
    assert elapsed < 60


def test_cycles_duplicates_and_orphans_do_not_break_the_tree(tmp_path):
    config, town, projects = make_town(tmp_path)
    cwd = town / "mayor"
    write_session(
        projects,
        cwd,
        [
            line("user", "u1", None, "hi", cwd=cwd),
            line("assistant", "a1", "u1", text("hello"), cwd=cwd),
            line("assistant", "a1", "u1", text("a duplicate uuid"), cwd=cwd),
            line("user", "x1", "x2", "cycle one", cwd=cwd),
            line("user", "x2", "x1", "cycle two", cwd=cwd),
            line("user", "y1", "missing", "orphan", cwd=cwd),
            line("user", "u2", "a1", "thanks", cwd=cwd),
        ],
    )
    (doc,) = read(config)[0]
    assert uuids(doc) == ["u1", "a1", "u2"]
    fl = doc.meta["file_lines"]
    assert (fl["duplicate_uuid"], fl["orphans"], fl["left_out"]) == (1, 1, 3)
    assert doc.meta["left_out_branches"] == 1

    write_session(
        projects,
        cwd,
        [line("user", "z1", "z2", "one", cwd=cwd), line("user", "z2", "z1", "two", cwd=cwd)],
        name="cycle",
    )
    docs, log = read(config)
    assert len(docs) == 2 and not log.quarantined
    assert uuids(next(d for d in docs if d.path.endswith("cycle.jsonl"))) == ["z1", "z2"]
