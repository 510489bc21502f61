"""The plan, the LoRA trainer, exact resumption, cancellation, and the saved adapter."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from gastown_ft.config import TrainingConfig
from gastown_ft.corpus.examples import assistant, make_example, user
from gastown_ft.errors import GastownFTError
from gastown_ft.training.data import collate, encode_examples, pack, share_prefixes
from gastown_ft.training.lora import (
    StepRunner,
    evaluate_loss,
    plan_training,
    prepare_model,
    token_loss_sum,
    train_lora,
)
from gastown_ft_tests.training.test_data import chat, make_tokenizer, save_tiny_model

LLAMA_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def short_chat(i: int) -> dict:
    """Short chats (no tools): the model can learn them in a few dozen steps."""
    pairs = [
        ("status?", "gt status"),
        ("ready work?", "bd ready"),
        ("my hook?", "gt hook"),
        ("finish", "gt done"),
    ]
    q, a = pairs[i % len(pairs)]
    return make_example(
        task="t", group_id=f"s{i}", source_ids=[], system=False, messages=[user(q), assistant(a)]
    )


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return save_tiny_model(
        tmp_path_factory.mktemp("base"), make_tokenizer(), hidden=32, layers=2, init_range=0.3
    )


def small_cfg(**kw) -> TrainingConfig:
    defaults = dict(
        lora_rank=4,
        lora_alpha=8,
        lora_dropout=0.1,
        learning_rate=5e-3,
        batch_size=4,
        grad_accum=2,
        max_seq_len=320,
        max_steps=7,
        checkpoint_every=3,
        warmup_ratio=0.2,
        threads=1,  # robust to a busy machine: OpenMP with 2 threads on 2 busy cores crawls
        seed=3,
    )
    defaults.update(kw)
    return TrainingConfig(**defaults)


def test_dry_run_plan_counts_tokens_steps_parameters_and_estimates(base_dir):
    cfg = small_cfg(max_steps=None, epochs=2.0)
    train = [chat(i) for i in range(18)] + [
        make_example(task="t", group_id="q", source_ids=[], messages=[user("x")])
    ]
    plan = plan_training(base_dir, train, [chat(i) for i in range(18, 22)], cfg)
    assert plan.target_modules == LLAMA_LINEARS  # all-linear: every projection, not the LM head
    assert plan.train_stats.kept == 18 and plan.train_stats.dropped == 1
    assert plan.batches_per_epoch == math.ceil(18 / 4)
    assert plan.total_steps == math.ceil(2 * plan.batches_per_epoch / 2)
    assert plan.tokenization_checked > 0 and plan.tokenization_mismatches == 0

    # Parameter counts from the meta-device model equal peft's on the real one.
    model = prepare_model(plan)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert (plan.n_trainable, plan.n_total) == (trainable, sum(p.numel() for p in model.parameters()))

    text = plan.describe()
    print(text)
    assert f"{plan.train_stats.tokens:,} tokens" in text
    assert f"{plan.total_steps:,} optimizer steps" in text
    assert "1 dropped" in text and "rank 4, alpha 8" in text and "q_proj, k_proj" in text
    assert f"{plan.n_trainable:,} trainable of {plan.n_total:,}" in text
    assert "estimated peak" in text and "MB" in text and "estimated time" in text
    assert "memory budget" in text and "ok" in text


def test_plan_scores_at_most_max_validation_examples(base_dir):
    val = [chat(i) for i in range(18, 26)]
    full = plan_training(base_dir, [chat(0)], val, small_cfg())
    capped = plan_training(base_dir, [chat(0)], val, small_cfg(max_validation_examples=3))
    assert full.val_stats.kept == 8 and capped.val_stats.kept == 3
    assert "at most 3, spread over tasks" in capped.describe()
    assert capped.fingerprint != full.fingerprint  # a resumed run never mixes the two curves


def test_plan_trains_at_most_max_examples_per_task(base_dir):
    train = [dict(chat(i), task="bead_update" if i % 3 else "bead_create") for i in range(12)]
    plan = plan_training(base_dir, train, [], small_cfg(max_examples_per_task={"bead_update": 3}))
    assert plan.train_stats.examples == 4 + 3  # every create, 3 of the 8 updates
    assert "(of 12: at most bead_update 3)" in plan.describe()
    full = plan_training(base_dir, train, [], small_cfg())
    assert full.train_stats.examples == 12 and plan.fingerprint != full.fingerprint


def test_plan_names_an_unknown_target_module(base_dir):
    with pytest.raises(GastownFTError, match="matches no linear layer"):
        plan_training(base_dir, [chat(0)], [], small_cfg(target_modules=["nope"]))


def test_over_budget_plan_lists_suggestions_and_training_refuses(base_dir, tmp_path):
    plan = plan_training(base_dir, [chat(i) for i in range(4)], [], small_cfg(memory_budget_mb=64))
    assert plan.over_budget
    assert "OVER BUDGET" in plan.describe() and "grad_accum = 4" in plan.describe()
    with pytest.raises(GastownFTError, match="over the budget of 64 MB"):
        train_lora(plan, tmp_path / "out")
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_packed_rows_give_the_same_loss_as_their_examples_apart(base_dir):
    """Position ids restarting per example make a block-diagonal mask: no cross-example attention."""
    tok = make_tokenizer()
    seqs, _ = encode_examples([short_chat(0), short_chat(1), short_chat(2)], tok, 256)
    plan = plan_training(
        base_dir, [short_chat(i) for i in range(3)], [], small_cfg(packing=True, max_seq_len=256)
    )
    assert len(plan.train_sequences) == 1  # all three in one row
    model = prepare_model(plan).eval()
    with torch.no_grad():
        packed, n_packed = token_loss_sum(model, collate(plan.train_sequences, tok.pad_token_id))
        apart = [token_loss_sum(model, collate([s], tok.pad_token_id)) for s in seqs]
    assert n_packed == sum(n for _l, n in apart)
    assert float(packed) == pytest.approx(sum(float(loss) for loss, _n in apart), rel=1e-5)


def test_the_resume_fingerprint_sees_a_rebuilt_base_model(tmp_path):
    tok = make_tokenizer()
    a = plan_training(save_tiny_model(tmp_path / "a", tok, seed=1), [chat(0)], [], small_cfg())
    b = plan_training(save_tiny_model(tmp_path / "b", tok, seed=2), [chat(0)], [], small_cfg())
    c = plan_training(save_tiny_model(tmp_path / "c", tok, seed=1), [chat(0)], [], small_cfg())
    assert a.fingerprint != b.fingerprint  # same config and sizes, other weights
    assert a.fingerprint == c.fingerprint  # the same model elsewhere
    assert (
        a.fingerprint
        == plan_training(tmp_path / "a", [chat(0)], [], small_cfg(checkpoint_every=9)).fingerprint
    )
    assert a.fingerprint != plan_training(tmp_path / "a", [chat(1)], [], small_cfg()).fingerprint


def _weighted(seq: dict, weight: float) -> dict:
    return {**seq, "weight": weight}


def _step(model, rows, micro) -> tuple[float, dict[str, torch.Tensor]]:
    """The loss and the (clipped) gradients of one training step over `micro` (row indices)."""
    model.zero_grad(set_to_none=True)
    loss = StepRunner(model, rows, make_tokenizer().pad_token_id).run(micro)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return loss, grads


def _assert_same_step(a, b, rel=1e-5) -> None:
    assert a[0] == pytest.approx(b[0], rel=rel)
    for name in a[1]:
        assert torch.allclose(a[1][name], b[1][name], rtol=1e-4, atol=1e-7), name


@pytest.fixture(scope="module")
def weighted_setup(base_dir):
    """The plan's model (dropout off) and two encoded examples of different lengths."""
    plan = plan_training(base_dir, [chat(0)], [], small_cfg())
    model = prepare_model(plan).eval()  # no dropout: the steps compared see the same network
    seqs, _ = encode_examples([chat(0), chat(5)], make_tokenizer(), 320)
    return model, seqs


def test_weights_of_one_give_the_unweighted_loss(weighted_setup):
    model, (a, b) = weighted_setup
    batch = collate([a, b], make_tokenizer().pad_token_id)
    with torch.no_grad():
        plain, n = token_loss_sum(model, batch)
        weighted, w = token_loss_sum(model, batch, weighted=True)
    assert (float(weighted), w) == (float(plain), n)  # bit for bit
    loss, _grads = _step(model, [a, b], [[0, 1]])
    assert loss == float(plain / n)  # the mean over trained tokens, as before weights
    # The same weight on every example changes nothing either (the weighted path, normalised).
    _assert_same_step(_step(model, [_weighted(a, 2.0), _weighted(b, 2.0)], [[0, 1]]), (loss, _grads))


def test_an_example_of_weight_three_counts_like_three_copies(weighted_setup):
    model, (a, b) = weighted_setup
    copies = _step(model, [a, a, a, b], [[0, 1, 2, 3]])
    rows = [_weighted(a, 3.0), b]
    _assert_same_step(_step(model, rows, [[0, 1]]), copies)
    # Normalised over the whole step, however it is split into micro-batches.
    _assert_same_step(_step(model, rows, [[0], [1]]), copies)
    # Packed into one row, each example's tokens keep its weight.
    packed = pack(rows, 1024)
    assert len(packed) == 1
    _assert_same_step(_step(model, packed, [[0]]), copies)
    # Validation stays unweighted.
    pad = make_tokenizer().pad_token_id
    assert evaluate_loss(model, rows, pad, 2) == evaluate_loss(model, [a, b], pad, 2)


def test_the_resume_fingerprint_sees_example_weights(base_dir):
    def fingerprint(weights):
        train = [{**chat(i), "weight": w} for i, w in enumerate(weights)]
        return plan_training(base_dir, train, [], small_cfg()).fingerprint

    unweighted = plan_training(base_dir, [chat(0), chat(1)], [], small_cfg()).fingerprint
    assert fingerprint([1.0, 1.0]) == fingerprint([None, None]) == unweighted
    assert fingerprint([3.0, 1.0]) != unweighted
    assert fingerprint([3.0, 1.0]) != fingerprint([1.0, 3.0])


def _adapter(path):
    return load_file(str(path / "adapter" / "adapter_model.safetensors"))


@pytest.mark.training
def test_resume_after_cancel_equals_an_uninterrupted_run(base_dir, tmp_path):
    train, val = [chat(i) for i in range(14)], [chat(i) for i in range(14, 17)]
    plan = plan_training(base_dir, train, val, small_cfg())
    assert plan.total_steps == 7

    steps_seen = []
    straight = train_lora(plan, tmp_path / "a", progress=steps_seen.append)
    assert straight.status == "completed" and straight.steps_done == 7
    assert [p["step"] for p in steps_seen] == list(range(1, 8))
    assert set(steps_seen[0]) == {"step", "total_steps", "epoch", "loss", "lr", "tokens_per_s", "eta_s"}
    assert [v[0] for v in straight.val_loss] == [
        0,
        3,
        6,
        7,
    ]  # the base model first, then each checkpoint and the end

    # Stop after 4 steps (not a checkpoint step): a checkpoint is written first.
    done = []
    first = train_lora(plan, tmp_path / "b", progress=done.append, should_stop=lambda: len(done) >= 4)
    assert first.status == "cancelled" and first.steps_done == 4 and first.adapter_dir is None
    ckpts = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert ckpts == ["step-3", "step-4"]  # the newest two
    state = json.loads((tmp_path / "b" / "checkpoints" / "step-4" / "state.json").read_text())
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (
        4,
        2,
        0,
    )  # 8 micro-batches, 4 an epoch
    assert json.loads((tmp_path / "b" / "training_state.json").read_text())["status"] == "cancelled"

    resumed = train_lora(plan, tmp_path / "b")
    assert resumed.status == "completed" and resumed.resumed_from_step == 4
    assert resumed.train_loss == straight.train_loss
    assert resumed.val_loss == straight.val_loss
    a, b = _adapter(tmp_path / "a"), _adapter(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    saved = json.loads((tmp_path / "b" / "training_state.json").read_text())
    assert saved["status"] == "completed" and saved["train_loss"] == straight.train_loss
    assert saved["peak_rss_bytes"] > 0 and saved["estimate_vs_measured"]["peak_bytes"][0] > 0

    # Running again on a finished directory is a no-op that ends in the same adapter.
    again = train_lora(plan, tmp_path / "b")
    assert again.resumed_from_step == 7 and again.train_loss == straight.train_loss
    # A changed config does not resume someone else's checkpoint.
    other = plan_training(base_dir, train, val, small_cfg(learning_rate=1e-3))
    with pytest.raises(GastownFTError, match="different run"):
        train_lora(other, tmp_path / "b")


@pytest.mark.training
def test_keyboard_interrupt_saves_the_last_completed_step(base_dir, tmp_path):
    plan = plan_training(
        base_dir, [chat(i) for i in range(8)], [], small_cfg(max_steps=5, checkpoint_every=10)
    )

    def progress(p):
        if p["step"] == 2:
            raise KeyboardInterrupt

    result = train_lora(plan, tmp_path, progress=progress)
    assert result.status == "cancelled" and result.steps_done == 2
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-2"]
    assert len(result.train_loss) == 2
    resumed = train_lora(plan, tmp_path)
    assert resumed.resumed_from_step == 2 and resumed.steps_done == 5 and len(resumed.train_loss) == 5


@pytest.mark.training
def test_ctrl_c_is_a_stop_request_that_checkpoints(base_dir, tmp_path):
    plan = plan_training(
        base_dir, [chat(i) for i in range(8)], [], small_cfg(max_steps=5, checkpoint_every=10)
    )
    previous = signal.getsignal(signal.SIGINT)

    def progress(p):
        if p["step"] == 3:
            os.kill(os.getpid(), signal.SIGINT)  # a first Ctrl-C: finish the step, checkpoint, stop

    result = train_lora(plan, tmp_path, progress=progress)
    assert result.status == "cancelled" and result.steps_done == 3
    assert (tmp_path / "checkpoints" / "step-3" / "state.json").is_file()
    assert signal.getsignal(signal.SIGINT) is previous  # the handler is put back


@pytest.mark.training
def test_validation_loss_drops_and_the_adapter_loads_back_with_peft(base_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    train = [short_chat(i) for i in range(32)]
    val = [short_chat(i) for i in range(4)]
    cfg = small_cfg(
        max_steps=None,
        epochs=6,
        batch_size=8,
        grad_accum=1,
        learning_rate=2e-2,
        lora_rank=8,
        lora_alpha=16,
        lora_dropout=0.0,
        checkpoint_every=8,
        max_seq_len=64,
    )
    plan = plan_training(base_dir, train, val, cfg)
    untrained = evaluate_loss(prepare_model(plan), plan.val_sequences, plan.pad_id, 8)
    result = train_lora(plan, tmp_path)
    assert result.status == "completed"
    final = result.val_loss[-1][1]
    print(f"val loss {untrained:.3f} -> {final:.3f}; {result.tokens_per_s:,.0f} tokens/s")
    assert final < 0.5 * untrained
    assert [v for _s, v in result.val_loss] == sorted((v for _s, v in result.val_loss), reverse=True)

    adapter_dir = tmp_path / "adapter"
    assert (adapter_dir / "adapter_config.json").is_file()
    assert (adapter_dir / "adapter_model.safetensors").is_file()
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == sorted(LLAMA_LINEARS) and config["r"] == 8

    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    loaded = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    trained = result.model.eval()
    batch = collate(plan.val_sequences, plan.pad_id)
    with torch.no_grad():
        a = loaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        b = trained(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(a, b)


# --- shared openings: one opening per merged row, the same loss and gradients ----------------------


def _shared_step(model, rows, micro, share: bool):
    model.zero_grad(set_to_none=True)
    runner = StepRunner(model, rows, make_tokenizer().pad_token_id, share_prefix=share)
    loss = runner.run(micro)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return (loss, grads), runner.tokens


def test_a_shared_opening_gives_the_same_loss_and_gradients(weighted_setup):
    model, _ = weighted_setup
    # chats 0 and 6 share rig and role (one opening), so do 1 and 4; chat 2 is alone; weights differ
    seqs, _ = encode_examples([chat(0), chat(2), chat(4), chat(1), chat(6)], make_tokenizer(), 320)
    rows = [_weighted(s, w) for s, w in zip(seqs, [1.0, 3.0, 0.5, 2.0, 1.0], strict=True)]
    assert all(s["prefix_len"] > 8 for s in rows)
    merged = share_prefixes(rows)
    assert len(merged) < len(rows)  # something was merged...
    assert any(r.get("spans") for r in merged)
    plain, plain_tokens = _shared_step(model, rows, [[0, 1, 2, 3, 4]], share=False)
    shared, shared_tokens = _shared_step(model, rows, [[0, 1, 2, 3, 4]], share=True)
    _assert_same_step(plain, shared)
    assert plain_tokens == shared_tokens  # tokens/s counts the examples' tokens either way
    batch = collate(merged, make_tokenizer().pad_token_id)
    assert int(batch["attention_mask"].sum()) < shared_tokens  # ...and computed once


def test_eager_attention_takes_the_shared_mask_as_additive_scores(weighted_setup, base_dir):
    from gastown_ft.training.lora import _attention_mask_4d

    model, _ = weighted_setup
    seqs, _ = encode_examples([chat(0), chat(3), chat(6)], make_tokenizer(), 320)
    batch = collate(share_prefixes(seqs), make_tokenizer().pad_token_id)
    base = model.get_base_model()
    impl = base.config._attn_implementation
    try:
        base.config._attn_implementation = "eager"
        mask = _attention_mask_4d(model, batch["shared_mask"])
        assert mask.dtype == next(base.parameters()).dtype
        assert bool((mask[batch["shared_mask"]] == 0).all())
        assert bool((mask[~batch["shared_mask"]] < -1e30).all())
        with torch.no_grad():
            eager = token_loss_sum(model, batch)
        base.config._attn_implementation = impl
        with torch.no_grad():
            sdpa = token_loss_sum(model, batch)
            apart = sum(
                float(token_loss_sum(model, collate([s], make_tokenizer().pad_token_id))[0]) for s in seqs
            )
        assert float(eager[0]) == pytest.approx(float(sdpa[0]), rel=1e-5)
        assert float(sdpa[0]) == pytest.approx(apart, rel=1e-5)
    finally:
        base.config._attn_implementation = impl


def test_a_padding_row_next_to_a_merged_row_gives_no_nan(weighted_setup):
    model, _ = weighted_setup
    seqs, _ = encode_examples([chat(0), chat(3), chat(1)], make_tokenizer(), 320)
    short = encode_examples([short_chat(0)], make_tokenizer(), 320)[0]
    rows = seqs + short  # the short chat (no system prompt) is padded beside the merged row
    assert sum(1 for r in share_prefixes(rows) if r.get("spans")) == 1
    model.train()
    try:
        (loss, grads), _ = _shared_step(model, rows, [[0, 1, 2, 3]], share=True)
    finally:
        model.eval()
    assert math.isfinite(loss)
    assert all(bool(torch.isfinite(g).all()) for g in grads.values())


def test_the_evaluation_loss_is_the_same_with_shared_openings(weighted_setup):
    model, _ = weighted_setup
    seqs, _ = encode_examples([chat(i) for i in range(7)], make_tokenizer(), 320)
    pad = make_tokenizer().pad_token_id
    shared = evaluate_loss(model, seqs, pad, 4)
    assert shared == pytest.approx(evaluate_loss(model, seqs, pad, 4, share_prefix=False), rel=1e-5)
    assert shared == pytest.approx(evaluate_loss(model, seqs, pad, 1), rel=1e-5)  # one at a time
