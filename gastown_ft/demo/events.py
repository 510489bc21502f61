"""The town's event feed (`.events.jsonl`) and lifecycle log (`logs/town.log`) for the demo day."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from gastown_ft.demo.world import World, iso


def build_events(w: World, *, ledger_fix_sha: str, courier_merge_sha: str) -> tuple[str, str]:
    """(.events.jsonl text, logs/town.log text)."""
    rng = w.rng("events")
    ids, p = w.ids, w.planter
    L, C = w.rigs[0].name, w.rigs[1].name
    ev: list[tuple[datetime, str, str, dict[str, Any], str]] = []

    def add(t: datetime, type_: str, actor: str, payload: dict[str, Any], vis: str = "feed") -> None:
        ev.append((t, type_, actor, payload, vis))

    gho = p.new("github_oauth_token", ".events.jsonl")
    add(
        w.day - timedelta(hours=14),
        "handoff",
        "mayor",
        {
            "subject": "HANDOFF: mayor session cycle",
            "message": f"Importer convoy drafted, not created. gh finally accepted {gho} if it asks again.",
        },
        "both",
    )
    add(w.at("08:50"), "session_start", "mayor", {"role": "mayor", "session": "hq-mayor"}, "audit")
    for at, bead, rig, pc in [
        ("09:02", ids["le_csv"], L, "nux"),
        ("09:03", ids["le_round"], L, "slit"),
        ("09:04", ids["co_backoff"], C, "furiosa"),
    ]:
        add(
            w.at(at),
            "sling",
            "mayor",
            {
                "bead": bead,
                "target": f"{rig}/polecats/{pc}",
                "convoy": ids["hq_convoy"],
                "formula": "mol-polecat-work",
            },
        )
        add(w.at(at), "spawn", "mayor", {"rig": rig, "polecat": pc, "session": f"gt-{rig}-{pc}"}, "audit")
        add(w.at(at, 20), "hook", f"{rig}/polecats/{pc}", {"bead": bead}, "both")
        add(w.at(at, 60), "session_start", f"{rig}/polecats/{pc}", {"role": "polecat", "rig": rig}, "audit")
    email = p.record("email", w.overseer.email, ".events.jsonl")
    phone = p.record("phone", w.overseer.phone, ".events.jsonl")
    add(
        w.at("09:05"),
        "mail",
        "mayor",
        {
            "to": "deacon/",
            "subject": "Overseer away until noon",
            "body": f"Only P0s: {w.overseer.first} at {email} or {phone}.",
        },
        "both",
    )
    add(w.at("09:20"), "session_start", f"{L}/witness", {"role": "witness", "rig": L}, "audit")
    add(
        w.at("09:31"),
        "mail",
        f"{C}/polecats/furiosa",
        {"to": "mayor/", "subject": f"ESCALATION {ids['hq_escalation']}", "severity": "HIGH"},
        "both",
    )
    add(w.at("09:33"), "session_end", f"{C}/polecats/furiosa", {"reason": "interrupted"}, "audit")
    add(
        w.at("09:41"),
        "done",
        f"{L}/polecats/nux",
        {"bead": ids["le_csv"], "mr": ids["le_mr"], "exit": "COMPLETED", "pre_verified": True},
    )
    add(
        w.at("09:41", 30),
        "mail",
        f"{L}/polecats/nux",
        {"to": f"{L}/witness", "subject": "POLECAT_DONE nux"},
        "audit",
    )
    add(w.at("09:42"), "unhook", f"{L}/polecats/nux", {"bead": ids["le_csv"]}, "audit")
    add(w.at("09:42", 40), "session_end", f"{L}/polecats/nux", {"reason": "done"}, "audit")
    add(
        w.at("09:44"),
        "merge_started",
        f"{L}/refinery",
        {"mr": ids["le_mr"], "branch": f"polecat/nux/{ids['le_csv']}"},
    )
    add(
        w.at("09:49"),
        "merge_done",
        f"{L}/refinery",
        {"mr": ids["le_mr"], "commit": ledger_fix_sha, "bead": ids["le_csv"]},
    )
    add(
        w.at("09:50"),
        "mail",
        f"{L}/refinery",
        {"to": f"{L}/witness", "subject": f"MERGED {ids['le_mr']}"},
        "audit",
    )
    add(
        w.at("09:52"),
        "nudge",
        f"{L}/witness",
        {"target": f"{L}/polecats/slit", "message": f"No output for 20 minutes. Still on {ids['le_round']}?"},
    )
    add(
        w.at("10:05"),
        "handoff",
        f"{L}/witness",
        {"subject": "witness cycle", "message": "slit nudged, no reply"},
    )
    add(w.at("10:08"), "session_start", f"{C}/refinery", {"role": "refinery", "rig": C}, "audit")
    add(
        w.at("10:10"),
        "merge_started",
        f"{C}/refinery",
        {"mr": ids["co_mr"], "branch": f"polecat/rictus/{ids['co_dlq']}"},
    )
    add(
        w.at("10:24"),
        "merge_done",
        f"{C}/refinery",
        {"mr": ids["co_mr"], "commit": courier_merge_sha, "bead": ids["co_dlq"]},
    )
    add(w.at("10:30"), "session_start", "deacon", {"role": "deacon"}, "audit")
    add(
        w.at("10:36"),
        "kill",
        "deacon",
        {"target": f"{C}/polecats/furiosa", "reason": "zombie: session stopped, escalation open"},
        "audit",
    )
    add(w.at("10:40"), "session_end", "deacon", {"reason": "patrol cycle"}, "audit")
    add(w.at("16:02"), "session_start", f"{L}/crew/max", {"role": "crew", "rig": L}, "audit")
    add(w.at("16:30"), "merge_started", f"{L}/refinery", {"mr": "crew/max", "branch": "crew/max"})
    add(
        w.at("16:31"),
        "merge_failed",
        f"{L}/refinery",
        {"mr": "crew/max", "reason": "pytest: 1 failed (test_round_half_even_in_minor_units)"},
    )
    add(
        w.at("16:41"),
        "merge_done",
        f"{L}/refinery",
        {"mr": "crew/max", "commit": f"{rng.getrandbits(160):040x}", "bead": ids["le_docs"]},
    )
    add(w.at("16:45"), "session_end", f"{L}/crew/max", {"reason": "exit"}, "audit")
    # Stable sort keeps causal order within a minute; then jitter the seconds without reordering.
    ev.sort(key=lambda e: e[0])
    prev: datetime | None = None
    for i, (t, *rest) in enumerate(ev):
        t = t + timedelta(seconds=rng.randrange(0, 15))
        if prev is not None and t <= prev:
            t = prev + timedelta(seconds=rng.randrange(1, 4))
        ev[i] = (t, *rest)
        prev = t

    events = "".join(
        json.dumps(
            {"ts": iso(t), "source": "gt", "type": ty, "actor": actor, "payload": payload, "visibility": vis},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        + "\n"
        for t, ty, actor, payload, vis in ev
    )

    log_home = p.record(
        "home_path_user", f"/Users/{w.overseer.login}/Library/Logs/gt/daemon.log", "logs/town.log"
    )
    lines = []
    for t, ty, actor, payload, _ in ev:
        context = " ".join(f"{k}={v}" for k, v in payload.items() if k not in ("message", "body"))
        if ty == "kill":
            context += f" (daemon log: {log_home})"
        lines.append(f"{iso(t)} [{ty}] {actor} {context}".rstrip())
    return events, "\n".join(lines) + "\n"
