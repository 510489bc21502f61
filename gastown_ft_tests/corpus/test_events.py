"""Town events: `.events.jsonl` and both forms of `logs/town.log`, with bad lines quarantined."""

from __future__ import annotations

import json
from pathlib import Path

from gastown_ft.config import TownConfig
from gastown_ft.corpus.documents import ReadLog
from gastown_ft.corpus.events import parse_log_line, read_events
from gastown_ft.corpus.scan import TownScan


def make_town(tmp_path: Path, **cfg) -> tuple[TownConfig, Path]:
    town = tmp_path / "town"
    for d in ("mayor", "deacon", "logs", "gastown/polecats/nux", "secret"):
        (town / d).mkdir(parents=True, exist_ok=True)
    return TownConfig(root=town, claude_projects_dir=tmp_path / "none", **cfg), town


def read(config: TownConfig) -> tuple[list, ReadLog]:
    log = ReadLog()
    return list(read_events(TownScan(config), log)), log


def event(ts: str, etype: str, actor: str, payload: dict | None = None, visibility: str = "feed") -> str:
    obj = {"ts": ts, "source": "gt", "type": etype, "actor": actor, "visibility": visibility}
    if payload is not None:
        obj["payload"] = payload
    return json.dumps(obj)


def test_events_jsonl(tmp_path):
    config, town = make_town(tmp_path)
    (town / ".events.jsonl").write_text(
        "\n".join(
            [
                event(
                    "2026-01-02T03:04:05Z",
                    "sling",
                    "mayor",
                    {"bead": "gt-abc", "target": "gastown/polecats/nux"},
                ),
                event(
                    "2026-01-02T03:05:00Z",
                    "done",
                    "gastown/polecats/nux",
                    {"bead": "gt-abc", "branch": "polecat/nux"},
                ),
                "[1, 2]",
                "{not json",
                event(
                    "2026-01-02T03:06:00Z",
                    "patrol_started",
                    "gastown/witness",
                    {"rig": "gastown", "polecat_count": 1},
                ),
                event(
                    "2026-01-02T03:07:00Z",
                    "kill",
                    "deacon/dogs/alpha",
                    {"target": "gt-x", "reason": "zombie"},
                ),
                json.dumps({"hello": "world"}),
                '{"ts": "2026-01-02T03:08:00Z", "type": "ma',
            ]
        )
    )
    docs, log = read(config)
    assert sorted((q.reason, q.line) for q in log.quarantined) == [
        ("invalid_json", 4),
        ("not_an_event", 7),
        ("not_an_object", 3),
        ("truncated_last_line", 8),
    ]
    assert [d.key for d in docs] == ["1", "2", "5", "6"]
    assert {d.kind for d in docs} == {"event"} and {d.path for d in docs} == {".events.jsonl"}
    sling, done, patrol, kill = docs
    assert (sling.role, sling.rig) == ("mayor", None)
    assert sling.text == "2026-01-02T03:04:05Z [sling] mayor: bead=gt-abc target=gastown/polecats/nux"
    assert sling.meta["payload"] == {"bead": "gt-abc", "target": "gastown/polecats/nux"}
    assert sling.meta["visibility"] == "feed" and sling.meta["line"] == 1
    assert (done.role, done.rig, done.meta["agent_name"]) == ("polecat", "gastown", "nux")
    assert (patrol.role, patrol.rig) == ("witness", "gastown")
    assert patrol.text.endswith("rig=gastown polecat_count=1")
    assert (kill.role, kill.rig, kill.meta["agent_name"]) == ("dog", None, "alpha")
    assert log.files_read == 1


def test_town_log_text_and_json_lines(tmp_path):
    config, town = make_town(tmp_path)
    (town / "logs" / "town.log").write_bytes(
        "\n".join(
            [
                "2025-12-26 15:30:45 [spawn] gastown/crew/max spawned for gt-xyz",
                '2026-01-02T03:04:05.123Z [nudge] gastown/witness nudged with "check your hook"',
                json.dumps(
                    {
                        "timestamp": "2026-01-02T04:00:00Z",
                        "type": "done",
                        "agent": "gastown/polecats/nux",
                        "context": "gt-abc",
                    }
                ),
                "this line is neither form",
                "",
                "2026-01-02 05:00:00 [handoff] mayor",
                "2026-01-02 05:01:00 [crash] deacon exited unexpectedly (caf\xe9)".encode("latin-1").decode(
                    "latin-1"
                ),
            ]
        ).encode("utf-8")
        + b"\n2026-01-02 06:00:00 [kill] gastown/polecats/nux killed (\xff)\n"
    )
    docs, log = read(config)
    assert [(q.reason, q.line) for q in log.quarantined] == [("unparsed_log_line", 4)]
    assert [d.key for d in docs] == ["1", "2", "3", "6", "7", "8"]
    assert {d.kind for d in docs} == {"log"} and {d.path for d in docs} == {"logs/town.log"}
    spawn, nudge, done, handoff, crash, kill = docs
    assert spawn.meta == {
        "timestamp": "2025-12-26 15:30:45",
        "type": "spawn",
        "agent": "gastown/crew/max",
        "context": "spawned for gt-xyz",
        "line": 1,
        "format": "text",
        "agent_name": "max",
    }
    assert (spawn.role, spawn.rig) == ("crew", "gastown")
    assert spawn.text == "2025-12-26 15:30:45 [spawn] gastown/crew/max spawned for gt-xyz"
    assert (nudge.role, nudge.meta["type"], nudge.meta["timestamp"]) == (
        "witness",
        "nudge",
        "2026-01-02T03:04:05.123Z",
    )
    assert done.meta["format"] == "json" and (done.role, done.rig) == ("polecat", "gastown")
    assert done.text == "2026-01-02T04:00:00Z [done] gastown/polecats/nux gt-abc"
    assert handoff.role == "mayor" and handoff.meta["context"] == ""
    assert crash.role == "deacon" and "caf\u00e9" in crash.text
    assert "\ufffd" in kill.text


def test_parse_log_line():
    assert parse_log_line("2025-12-26 15:30:45 [mass_death] daemon MASS SESSION DEATH (3 in 5s)") == {
        "timestamp": "2025-12-26 15:30:45",
        "type": "mass_death",
        "agent": "daemon",
        "context": "MASS SESSION DEATH (3 in 5s)",
    }
    assert parse_log_line("2025-12-26T15:30:45+01:00 [wake] gastown/polecats/nux resumed")["type"] == "wake"
    assert parse_log_line("[spawn] gastown/crew/max spawned") is None
    assert parse_log_line("2025-12-26 15:30:45 spawn gastown/crew/max") is None


def test_where_event_files_are_read(tmp_path):
    extra = tmp_path / "old-town"
    (extra / "logs").mkdir(parents=True)
    config, town = make_town(tmp_path, extra_paths=[extra], exclude_rigs=["secret"])
    (town / "gastown" / ".events.jsonl").write_text(
        event("2026-01-01T00:00:00Z", "merged", "gastown/refinery")
    )
    (town / "gastown" / "polecats" / "nux" / ".events.jsonl").write_text(
        event("2026-01-01T00:00:00Z", "x", "mayor")
    )  # a file inside a worktree is not the rig's feed
    (town / "secret" / ".events.jsonl").write_text(event("2026-01-01T00:00:00Z", "x", "secret/witness"))
    (extra / "logs" / "town.log").write_text("2025-01-01 00:00:00 [spawn] gastown/polecats/nux spawned\n")
    (extra / "town.log").write_text("2025-01-01 00:00:01 [kill] gastown/polecats/nux killed\n")
    (town / ".events.jsonl").write_text(
        event("2026-01-01T00:00:00Z", "mail", "secret/witness", {"to": "mayor"}) + "\n"
    )
    docs, log = read(config)
    assert sorted(d.path for d in docs) == [
        (extra / "logs" / "town.log").as_posix(),
        (extra / "town.log").as_posix(),
        "gastown/.events.jsonl",
    ]
    refinery = next(d for d in docs if d.kind == "event")
    assert (refinery.role, refinery.rig) == ("refinery", "gastown")
    assert log.skipped["excluded_rig"] == 1  # the town event from the excluded rig


def test_exclusion_and_unreadable_files(tmp_path):
    config, town = make_town(tmp_path, exclude=["logs/*"])
    (town / "logs" / "town.log").write_text("2025-12-26 15:30:45 [spawn] mayor spawned\n")
    (town / ".events.jsonl").write_bytes(b"\x00\x01\x02" * 100)
    assert read(config)[0] == []
    docs, log = read(config)
    assert [(q.path, q.reason) for q in log.quarantined] == [(".events.jsonl", "binary_file")]

    config, town = make_town(tmp_path / "b")
    (town / "logs" / "town.log").write_text("")
    (town / ".events.jsonl").write_text("\n\n")
    docs, log = read(config)
    assert docs == []
    assert sorted((q.path, q.reason) for q in log.quarantined) == [
        (".events.jsonl", "no_valid_lines"),
        ("logs/town.log", "empty_file"),
    ]


def test_commit_of_rig_events(tmp_path):
    import subprocess

    config, town = make_town(tmp_path)
    rig = town / "gastown"
    git = ["git", "-C", str(rig), "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (rig / "f").write_text("x")
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (town / ".events.jsonl").write_text(
        event("2026-01-01T00:00:00Z", "done", "gastown/polecats/nux")
        + "\n"
        + event("2026-01-01T00:00:01Z", "sling", "mayor")
        + "\n"
    )
    done, sling = read(config)[0]
    assert done.commit == head and sling.commit is None


def test_our_own_feed_reports_are_not_read_back_as_town_events(tmp_path):
    from gastown_ft.town.feed import append_event, make_event

    config, town = make_town(tmp_path)
    feed = town / ".events.jsonl"
    feed.write_text(event("2026-01-02T03:04:05Z", "sling", "mayor", {"bead": "gt-abc"}) + "\n")
    append_event(feed, make_event("ft_started", "gastown-ft", {"stage": "training"}))
    assert len(feed.read_text().splitlines()) == 2
    docs, log = read(config)
    assert [d.meta["type"] for d in docs] == ["sling"]
    assert log.skipped["own_report"] == 1
