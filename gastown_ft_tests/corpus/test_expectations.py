from __future__ import annotations

from gastown_ft.corpus.examples import assistant, make_example, tool_call, tool_result, user
from gastown_ft.corpus.expectations import validate_documents, validate_examples, validate_splits

COLUMNS = ["doc_id", "text", "title", "meta"]


def by_name(outcomes):
    return {o.name: o for o in outcomes}


def ex(messages, group="g1", task="t"):
    return make_example(
        task=task, messages=messages, group_id=group, source_ids=["d"], role="polecat", rig="r"
    )


def test_documents_clean_and_dirty():
    clean = [
        {"doc_id": "a", "text": "bd close gt-0anl --reason done; 127.0.0.1", "title": "x", "meta": "{}"},
        {"doc_id": "b", "text": "sha 3f2a9c1e", "title": "y", "meta": "{}"},
    ]
    assert all(o.passed for o in validate_documents(clean, COLUMNS))
    dirty = clean + [
        {"doc_id": "c", "text": "token ghp_" + "a1B2" * 9, "title": "z", "meta": "{}"},
        {"doc_id": "d", "text": "ok", "title": "z", "meta": '{"owner": "alice@example.com"}'},
    ]
    res = by_name(validate_documents(dirty, COLUMNS))
    assert not res["no_secret_residue"].passed and res["schema"].passed
    assert res["no_secret_residue"].details["failed"][0]["unexpected_count"] == 2
    dup = by_name(validate_documents(clean + [clean[0]], COLUMNS))
    assert not dup["schema"].passed


def test_examples_roles_tokens_and_residue():
    good = ex(
        [
            user("Claim gt-1"),
            assistant("Claiming.", [tool_call("c1", "Bash", {"command": "bd update gt-1 --claim"})]),
            tool_result("c1", "ok"),
            assistant("Done."),
        ]
    )
    res = by_name(validate_examples([good], max_tokens=512))
    assert all(o.passed for o in res.values()), res
    bad_order = ex([assistant("hi"), user("x")], group="g2")
    orphan_tool = ex([user("x"), tool_result("c9", "??"), assistant("y")], group="g3")
    too_long = ex([user("x" * 5000), assistant("y")], group="g4")
    leaky = ex([user("my key is AKIA" + "ABCDEFGHIJKLMNOP"), assistant("noted")], group="g5")
    res = by_name(validate_examples([good, bad_order, orphan_tool, too_long, leaky], max_tokens=512))
    assert res["roles_in_order"].details["failed"][0]["unexpected_count"] == 2
    assert not res["token_lengths"].passed and not res["no_secret_residue"].passed
    assert res["schema"].passed


def test_splits_leakage():
    rows = lambda *gs: [{"group_id": g} for g in gs]  # noqa: E731
    ok = by_name(validate_splits({"train": rows("a", "b"), "validation": rows("c"), "test": rows("d")}))
    assert ok["no_group_in_two_splits"].passed and ok["schema"].passed
    leak = by_name(validate_splits({"train": rows("a", "b"), "validation": rows("b"), "test": rows()}))
    assert not leak["no_group_in_two_splits"].passed
    assert not by_name(validate_splits({"train": rows("a"), "dev": rows("z")}))["schema"].passed


def test_validated_batches_are_not_kept():
    """A streamed stage validates many batches: GX's execution engine would keep each one's frame."""
    from gastown_ft.corpus.expectations import DocumentChecks, _pandas_source

    checks = DocumentChecks(COLUMNS)
    for batch in range(4):
        checks.add(
            [{"doc_id": f"{batch}-{i}", "text": f"ok {i}", "title": "t", "meta": "{}"} for i in range(50)]
        )
    engine = _pandas_source("documents").get_execution_engine()
    assert len(engine.batch_manager.batch_data_cache) == 0
    assert all(o.passed for o in checks.outcomes())
