from __future__ import annotations

import copy
import hashlib
import json
import random
import time

import numpy as np
import pytest

from gastown_ft.corpus.dedup import (
    MAX_VERIFY,
    DedupResult,
    _identity,
    _jaccard,
    _Sketcher,
    conversation_text,
    dedup_examples,
    lsh_params,
    shingle_hashes,
)

VOCAB = [
    f"{a}{b}" for a in ("gt", "bd", "rig", "bead", "hook", "mail", "molecule", "convoy") for b in range(250)
]


def words(seed: int, n: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def example(
    user: str,
    answer: str,
    *,
    source_time: float = 1.0,
    system: str = "You are a polecat.",
    tool_output: str | None = None,
    call_id: str = "toolu_1",
    example_id: str | None = None,
    group_id: str = "g",
) -> dict:
    messages: list[dict] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    if tool_output is not None:
        messages += [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "bash", "arguments": json.dumps({"command": "gt hook"})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "content": tool_output},
        ]
    messages.append({"role": "assistant", "content": answer})
    eid = example_id or hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
    return {
        "example_id": eid,
        "messages": messages,
        "tools": [],
        "task": "chat",
        "rig": None,
        "role": "polecat",
        "source_ids": [eid[:8]],
        "quality": 1.0,
        "weight": 1.0,
        "group_id": group_id,
        "source_time": source_time,
    }


def ids(rows) -> list[str]:
    return [r["example_id"] for r in rows]


def removed_as(result: DedupResult) -> dict[str, tuple[str, str]]:
    return {eid: (reason, kept) for eid, reason, kept in result.removed}


# --- exact duplicates ------------------------------------------------------------------------------


def test_exact_duplicates_keep_the_newest():
    a = example("Fix the build", "Done, the build is green.", source_time=10)
    b = copy.deepcopy(a) | {"example_id": "b" * 64, "source_time": 20, "group_id": "other"}
    # whitespace, case and unicode compatibility forms do not matter
    c = copy.deepcopy(a) | {"example_id": "c" * 64, "source_time": 5}
    c["messages"][1]["content"] = "  fix   the\nBUILD "
    c["messages"][2]["content"] = "Done,  the build is green\uff0e"  # fullwidth full stop: NFKC makes it "."
    d = example("Fix the build", "Done, the build is RED.", source_time=1, system="Other system prompt")
    result = dedup_examples([a, b, c, d])
    assert ids(result.kept) == [b["example_id"], d["example_id"]]
    assert removed_as(result) == {
        a["example_id"]: ("exact_duplicate", b["example_id"]),
        c["example_id"]: ("exact_duplicate", b["example_id"]),
    }
    assert result.conflicts == []
    assert result.counts() == {"kept": 2, "exact_duplicate": 2, "near_duplicate": 0, "conflict_older": 0}


def test_exact_duplicate_tie_keeps_smallest_id_and_tool_call_ids_do_not_matter():
    a = example(
        "Check the hook", "Nothing on the hook.", tool_output="empty", call_id="toolu_AAA", example_id="e2"
    )
    b = example(
        "Check the hook", "Nothing on the hook.", tool_output="empty", call_id="call_zzz", example_id="e1"
    )
    result = dedup_examples([a, b])
    assert ids(result.kept) == ["e1"]
    assert result.removed == [("e2", "exact_duplicate", "e1")]
    # an identical row twice (same id, same time): one is kept, whatever the order
    assert len(dedup_examples([a, copy.deepcopy(a)]).kept) == 1


def test_tool_call_arguments_are_compared_as_json():
    a = example("List", "ok", tool_output="x", example_id="a")
    b = copy.deepcopy(a) | {"example_id": "b"}
    b["messages"][2]["tool_calls"][0]["function"]["arguments"] = '{ "command" :  "gt hook" }'
    assert ids(dedup_examples([a, b]).kept) == ["a"]
    c = copy.deepcopy(a) | {"example_id": "c"}
    c["messages"][2]["tool_calls"][0]["function"]["arguments"] = '{"command": "gt mail inbox"}'
    assert len(dedup_examples([a, c]).kept) == 2  # prompts differ (the call is before the last answer)


# --- near duplicates -------------------------------------------------------------------------------


def test_one_word_change_in_a_long_answer_is_a_near_duplicate():
    answer = words(1, 300)
    changed = answer.split(" ")
    changed[150] = "polecat"
    old = example("Summarize the convoy status please", answer, source_time=1)
    new = example("Summarize the convoy status, kindly", " ".join(changed), source_time=2)
    # different prompts, so this is not a conflict; the shingle sets are close
    sim = _jaccard(shingle_hashes(conversation_text(old)), shingle_hashes(conversation_text(new)))
    assert 0.9 <= sim < 1.0
    result = dedup_examples([old, new])
    assert ids(result.kept) == [new["example_id"]]
    assert result.removed == [(old["example_id"], "near_duplicate", new["example_id"])]
    assert result.conflicts == []


def test_distinct_but_similar_examples_are_kept():
    # same task template, different specifics: a few words in each sentence differ
    template = "Bead {b} is blocked on {c}. I ran the {t} tests and {n} of them failed in {m}."
    rows = [
        example(
            f"What is the state of bead gt-{i}?",
            " ".join(
                template.format(
                    b=f"gt-{i}{k}", c=f"hq-{i * 7 + k}", t=VOCAB[i + k], n=i + k, m=VOCAB[100 + i]
                )
                for k in range(12)
            ),
        )
        for i in range(20)
    ]
    result = dedup_examples(rows)
    assert len(result.kept) == 20 and result.removed == []


def test_threshold_decides():
    answer = words(2, 60)
    changed = answer.split(" ")
    changed[30] = "witness"
    a = example("Report please", answer, source_time=1)
    b = example("Report, please", " ".join(changed), source_time=2)
    sim = _jaccard(shingle_hashes(conversation_text(a)), shingle_hashes(conversation_text(b)))
    assert 0.7 < sim < 0.9
    assert len(dedup_examples([a, b], threshold=0.9).kept) == 2
    low = dedup_examples([a, b], threshold=0.7)
    assert ids(low.kept) == [b["example_id"]]
    assert low.removed == [(a["example_id"], "near_duplicate", b["example_id"])]
    with pytest.raises(ValueError):
        dedup_examples([a, b], threshold=0)


def test_system_prompt_is_not_shingled_by_default():
    system = words(3, 2000)  # a long shared role prompt
    a = example("one", words(4, 80), system=system)
    b = example("two", words(5, 80), system=system)
    assert len(dedup_examples([a, b]).kept) == 2
    assert len(dedup_examples([a, b], shingle_system=True).kept) == 1


def test_near_duplicates_do_not_chain():
    # a ~ b and b ~ c, but a !~ c: b goes (dup of the newer a), c stays (its only neighbour was dropped)
    base = words(6, 200).split(" ")
    b_words = list(base)
    for k in range(3):
        b_words[20 + k * 60] = "mayor"
    c_words = list(b_words)
    for k in range(3):
        c_words[50 + k * 60] = "deacon"
    a = example("q a", " ".join(base), source_time=3)
    b = example("q b", " ".join(b_words), source_time=2)
    c = example("q c", " ".join(c_words), source_time=1)
    text = {k: shingle_hashes(conversation_text(v)) for k, v in {"a": a, "b": b, "c": c}.items()}
    assert _jaccard(text["a"], text["b"]) >= 0.8 and _jaccard(text["b"], text["c"]) >= 0.8
    assert _jaccard(text["a"], text["c"]) < 0.8
    result = dedup_examples([c, b, a], threshold=0.8)
    assert ids(result.kept) == [a["example_id"], c["example_id"]]
    assert result.removed == [(b["example_id"], "near_duplicate", a["example_id"])]


def test_lsh_parameters_favour_recall():
    b, r = lsh_params(0.9, 128)
    assert b * r <= 128
    assert 1 - (1 - 0.9**r) ** b >= 0.95  # a pair at the threshold is a candidate
    assert 1 - (1 - 0.6**r) ** b < 0.05  # a pair far under it rarely is


def test_a_cluster_keeps_one():
    base = words(7, 300).split(" ")
    rows = []
    for i in range(50):
        variant = list(base)
        variant[5 + i * 5] = "refinery"
        rows.append(example("Summarize the patrol", " ".join(variant), source_time=i, group_id=f"s{i}"))
        rows[-1]["messages"][1]["content"] += f" number {i}"  # distinct prompts: no conflicts
    result = dedup_examples(rows)
    assert ids(result.kept) == [rows[49]["example_id"]]
    assert {reason for _e, reason, _k in result.removed} == {"near_duplicate"}
    assert {kept for _e, _r, kept in result.removed} == {rows[49]["example_id"]}


def test_dense_shell_under_the_threshold_is_bounded():
    # 1500 variants of one text, pairwise alike (J ~ 0.8) but under 0.9: all kept, checks capped
    rng = random.Random(8)
    base = words(8, 300).split(" ")
    rows = []
    for i in range(1500):
        variant = list(base)
        for _ in range(4):
            variant[rng.randrange(300)] = rng.choice(VOCAB)
        rows.append(example(f"patrol {i}", " ".join(variant), source_time=i))
    started = time.perf_counter()
    result = dedup_examples(rows)
    assert time.perf_counter() - started < 20
    assert result.stats["sketched"] == 1500
    assert result.stats["verified"] <= MAX_VERIFY * len(result.kept)
    for eid, _reason, kept in result.removed:  # whatever was dropped really was a near-duplicate
        a = next(r for r in rows if r["example_id"] == eid)
        b = next(r for r in rows if r["example_id"] == kept)
        assert _jaccard(shingle_hashes(conversation_text(a)), shingle_hashes(conversation_text(b))) >= 0.9


# --- conflicts -------------------------------------------------------------------------------------


def test_conflicts_keep_the_newest_and_are_reported():
    prompt = "Which formula runs the polecat work loop?"
    old = example(prompt, "mol-polecat-work, version 1.", source_time=100)
    mid = example(prompt, "It is mol-polecat-loop.", source_time=200)
    new = example(prompt, "mol-polecat-work (version 3) since the refactor.", source_time=300)
    other = example("Unrelated question", "Unrelated answer", source_time=50)
    result = dedup_examples([old, new, other, mid])
    assert set(ids(result.kept)) == {new["example_id"], other["example_id"]}
    assert removed_as(result) == {
        old["example_id"]: ("conflict_older", new["example_id"]),
        mid["example_id"]: ("conflict_older", new["example_id"]),
    }
    assert len(result.conflicts) == 1
    conflict = result.conflicts[0]
    assert conflict["kept_id"] == new["example_id"]
    assert conflict["dropped_ids"] == sorted([old["example_id"], mid["example_id"]])
    assert len(conflict["prompt_hash"]) == 64
    # the prompt is normalized too
    shouted = example(prompt.upper() + "  ", "A fourth answer.", source_time=400)
    assert dedup_examples([old, shouted]).conflicts[0]["kept_id"] == shouted["example_id"]


def test_prompt_with_only_a_system_message_is_no_conflict():
    a = {
        **example("x", "y"),
        "messages": [{"role": "system", "content": "Prime"}, {"role": "assistant", "content": "a"}],
    }
    b = {
        **example("x", "z"),
        "messages": [{"role": "system", "content": "Prime"}, {"role": "assistant", "content": "b"}],
    }
    a["example_id"], b["example_id"] = "a", "b"
    result = dedup_examples([a, b])
    assert len(result.kept) == 2 and result.conflicts == []


def test_conflict_ties_keep_smallest_id():
    a = example("Same prompt", "answer one", source_time=5, example_id="b-id")
    b = example("Same prompt", "answer two", source_time=5, example_id="a-id")
    result = dedup_examples([a, b])
    assert ids(result.kept) == ["a-id"]
    assert result.conflicts[0]["kept_id"] == "a-id"


# --- determinism -----------------------------------------------------------------------------------


def mixed_corpus() -> list[dict]:
    rows = []
    for i in range(40):
        rows.append(
            example(f"question {i}", words(100 + i, 120), source_time=i % 7, tool_output=words(i, 30))
        )
    rows.append(copy.deepcopy(rows[3]) | {"source_time": 99})  # exact, same id, newer
    rows.append(copy.deepcopy(rows[4]) | {"example_id": "zzz", "source_time": 4})  # exact, tie on time
    near = copy.deepcopy(rows[5])
    near["messages"][1]["content"] = "question five"
    near["messages"][-1]["content"] += " extra"
    near["example_id"] = "near-5"
    rows.append(near)
    conflicting = copy.deepcopy(rows[6])
    conflicting["messages"][-1]["content"] = "a different answer"
    conflicting["example_id"] = "conflict-6"
    conflicting["source_time"] = 50
    rows.append(conflicting)
    return rows


def test_result_does_not_depend_on_input_order():
    rows = mixed_corpus()
    reference = dedup_examples(rows)
    assert reference.counts() == {"kept": 40, "exact_duplicate": 2, "near_duplicate": 1, "conflict_older": 1}
    for seed in range(5):
        shuffled = [copy.deepcopy(r) for r in rows]
        random.Random(seed).shuffle(shuffled)
        result = dedup_examples(shuffled)
        assert ids(result.kept) == ids(reference.kept)
        assert result.kept == reference.kept
        assert result.removed == reference.removed
        assert result.conflicts == reference.conflicts


def test_empty_and_degenerate_inputs():
    assert dedup_examples([]).kept == []
    blank = {"example_id": "x", "messages": [], "source_time": None}
    blank2 = {"example_id": "y", "messages": []}
    result = dedup_examples([blank, blank2])
    assert ids(result.kept) == ["x"] and result.removed == [("y", "exact_duplicate", "x")]
    only_system = [
        {"example_id": f"s{i}", "messages": [{"role": "system", "content": f"prompt {i}"}]} for i in range(3)
    ]
    assert len(dedup_examples(only_system).kept) == 3  # nothing to shingle: never near-duplicates


def test_bulk_signatures_match_datasketch():
    from datasketch import MinHash

    rng = np.random.default_rng(0)
    arrays = [
        np.unique(rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32))
        for n in (1, 5, 300, 5000, 7, 3000, 2)
    ]
    sketcher = _Sketcher(128)
    signatures = sketcher.signatures(arrays)
    for array, row in zip(arrays, signatures, strict=True):
        m = MinHash(num_perm=128, seed=1, hashfunc=_identity, scheme="affine32")
        m.update_batch(array.tolist())
        assert np.array_equal(m.hashvalues, row)


def test_shingles():
    assert len(shingle_hashes("")) == 0
    assert len(shingle_hashes("one")) == 1
    assert len(shingle_hashes("a b c d e f g")) == 3
    assert np.array_equal(shingle_hashes("a b c d e a b c d e"), shingle_hashes("a b c d e a b c d e"))
    assert len(shingle_hashes("a b c d e a b c d e")) == 5  # repeated shingles count once
    assert len(shingle_hashes("日本 語 テキスト です よ ね")) == 2


# --- scale -----------------------------------------------------------------------------------------


def synthetic(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        answer = " ".join(rng.choice(VOCAB) for _ in range(rng.randint(120, 250)))
        tool = " ".join(rng.choice(VOCAB) for _ in range(rng.randint(20, 120)))
        rows.append(example(f"task {i}: {rng.choice(VOCAB)}", answer, source_time=i % 101, tool_output=tool))
    return rows


@pytest.mark.slow
def test_scale_20k():
    rows = synthetic(19_600)
    planted_exact = [copy.deepcopy(rows[i]) | {"example_id": f"exact-{i}"} for i in range(0, 200)]
    planted_near = []
    for i in range(200, 400):
        near = copy.deepcopy(rows[i])
        near["messages"][1]["content"] += " now"
        near["messages"][-1]["content"] += " thanks"
        near["example_id"] = f"near-{i}"
        planted_near.append(near)
    rows += planted_exact + planted_near
    assert len(rows) == 20_000
    started = time.perf_counter()
    result = dedup_examples(rows)
    elapsed = time.perf_counter() - started
    counts = result.counts()
    assert counts["exact_duplicate"] == 200
    assert counts["near_duplicate"] == 200  # every planted pair found, and nothing else
    assert counts["conflict_older"] == 0
    assert counts["kept"] == 19_600
    assert elapsed < 30, elapsed
