"""Role, rig and agent from a path, an actor name and primed text."""

from __future__ import annotations

import pytest

from gastown_ft.corpus.roles import ROLES, role_from_actor, role_from_path, role_from_text


@pytest.mark.parametrize(
    "rel, expected",
    [
        ("mayor", ("mayor", None, None)),
        ("mayor/rig", ("mayor", None, None)),
        ("deacon", ("deacon", None, None)),
        ("deacon/dogs/alpha", ("dog", None, "alpha")),
        ("deacon/dogs/alpha/work", ("dog", None, "alpha")),
        ("deacon/dogs/boot", ("boot", None, "boot")),
        ("gastown/witness", ("witness", "gastown", None)),
        ("gastown/refinery/rig", ("refinery", "gastown", None)),
        ("gastown/polecats/nux", ("polecat", "gastown", "nux")),
        ("gastown/polecats/nux/internal/cmd", ("polecat", "gastown", "nux")),
        ("gastown/crew/max", ("crew", "gastown", "max")),
        ("gastown/mayor/rig", ("mayor", "gastown", None)),
        ("gastown/polecats", (None, "gastown", None)),
        ("gastown/src", (None, "gastown", None)),
        ("gastown", (None, "gastown", None)),
        ("", (None, None, None)),
        ("logs", (None, None, None)),
        (".beads", (None, None, None)),
    ],
)
def test_role_from_path(rel, expected):
    assert role_from_path(rel.split("/") if rel else []) == expected


@pytest.mark.parametrize(
    "actor, expected",
    [
        ("mayor", ("mayor", None, None)),
        ("deacon", ("deacon", None, None)),
        ("dog", ("dog", None, None)),
        ("deacon/dogs/alpha", ("dog", None, "alpha")),
        ("gastown/witness", ("witness", "gastown", None)),
        ("gastown/refinery", ("refinery", "gastown", None)),
        ("gastown/polecats/nux", ("polecat", "gastown", "nux")),
        ("gastown/crew/max", ("crew", "gastown", "max")),
        ("beads/crew/emma/", ("crew", "beads", "emma")),
        ("gastown/Toast", (None, "gastown", "Toast")),
        ("Steve Yegge", (None, None, None)),
        ("gt", (None, None, None)),
        ("", (None, None, None)),
        (None, (None, None, None)),
        (42, (None, None, None)),
    ],
)
def test_role_from_actor(actor, expected):
    assert role_from_actor(actor) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("GT_ROLE=polecat GT_RIG=gastown GT_POLECAT=nux", ("polecat", "gastown", "nux")),
        ("export GT_ROLE=gastown/crew/max && claude", ("crew", "gastown", "max")),
        ("GT_ROLE: deacon", ("deacon", None, None)),
        (
            "# Witness Context\n\n## Your Role: WITNESS (Rig Manager for gastown)",
            ("witness", "gastown", None),
        ),
        (
            "# Refinery Context\n## Your Role: REFINERY (Merge Queue Processor for beads)",
            ("refinery", "beads", None),
        ),
        ("## Your Role: POLECAT (Worker: furiosa in gastown)", ("polecat", "gastown", "furiosa")),
        ("You are polecat **nux** — a worker agent in the gastown rig.", ("polecat", "gastown", "nux")),
        ("You are polecat nux", ("polecat", None, "nux")),
        ("# Crew Worker Context\n## Your Role: CREW WORKER (max in gastown)", ("crew", "gastown", "max")),
        ("# Mayor Context\nGas Town is a steam engine. You are the main drive shaft.", ("mayor", None, None)),
        ("# Dog Context\nYou are a **Dog** - a town-level worker", ("dog", None, None)),
        ("# Boot Context\nYou are **Boot**", ("boot", None, "boot")),
        ("Please fix the flaky test in witness.go", (None, None, None)),
        ("", (None, None, None)),
        (None, (None, None, None)),
    ],
)
def test_role_from_text(text, expected):
    assert role_from_text(text) == expected


def test_explicit_role_beats_headings():
    text = "# Polecat Context\n...\nGT_ROLE=gastown/witness"
    assert role_from_text(text) == ("witness", "gastown", None)


def test_roles_vocabulary():
    assert set(ROLES) == {"mayor", "deacon", "witness", "refinery", "polecat", "crew", "dog", "boot"}
