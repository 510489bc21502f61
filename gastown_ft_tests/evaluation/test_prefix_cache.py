"""Shared openings prefilled once: the same greedy answers as prefilling every prompt whole."""

from __future__ import annotations

import pytest

from gastown_ft.evaluation.generate import Prompt, generate, load_model
from gastown_ft.evaluation.prefix_cache import MIN_SHARED, OpeningCache, opening_lengths
from gastown_ft_tests.export.models import PROMPT, one_torch_thread, tiny_export_models


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    models = tiny_export_models(tmp_path_factory)
    with one_torch_thread():
        yield load_model(models.base_dir, models.adapter_dir)


def test_each_prompt_shares_its_longest_prefix_with_a_neighbour():
    a = list(range(40))
    ids = [a + [100, 1], a[:30] + [7, 7], a + [100, 2, 3], [5] * 40, a[:10] + [9] * 30]
    # the two long ones share 41 tokens, the third 30 with them; the last two share nothing long enough
    assert opening_lengths(ids) == [41, 30, 41, 0, 0]
    assert opening_lengths([[1] * 20, [1] * 20]) == [19, 19]  # a token is always left to prefill
    assert opening_lengths([[1] * (MIN_SHARED - 1), [1] * (MIN_SHARED - 1)]) == [0, 0]


def test_openings_are_dropped_after_their_last_row(loaded):
    rows = [[1] * 30 + [2], [1] * 30 + [3], [4] * 30 + [5]]
    cache = OpeningCache(loaded.model, rows, [30, 30, 0])
    cache.batch(rows[:1], [30], loaded.pad_id)
    assert len(cache._kv) == 1  # the second row still needs it
    cache.batch(rows[1:], [30, 0], loaded.pad_id)
    assert cache._kv == {}


def test_shared_openings_give_the_same_answers(loaded):
    system = {"role": "system", "content": "You are a polecat in rig ledger. " * 6}
    other = {"role": "system", "content": "You are the witness of rig courier. " * 6}
    asks = ["close le-1 as done", "what is on my hook?", PROMPT[-1]["content"], "bd ready", "sling le-7"]
    prompts = [Prompt([system, {"role": "user", "content": q}]) for q in asks]
    prompts += [Prompt([other, {"role": "user", "content": q}]) for q in asks[:3]]
    prompts.append(Prompt([{"role": "user", "content": "alone, nothing shared"}]))
    prompts.append(Prompt([system, {"role": "user", "content": "a long one " * 400}]))  # cut to fit
    for variant in ("base", "tuned"):
        whole = generate(
            loaded, prompts, variant=variant, max_new_tokens=24, batch_size=4, share_openings=False
        )
        shared = generate(loaded, prompts, variant=variant, max_new_tokens=24, batch_size=4)
        assert [g.text for g in shared] == [g.text for g in whole]
        assert [g.prompt_tokens for g in shared] == [g.prompt_tokens for g in whole]
        assert shared[-1].truncated and not shared[0].truncated
