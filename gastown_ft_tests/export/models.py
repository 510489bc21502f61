"""Tiny models for the export tests: a base LLaMA with our tokenizer, and a LoRA adapter that changes it.

The base is pretrained for a few steps on ChatML conversations (so it has seen `<|im_end|>`); the
adapter is then trained until the model answers the test prompt with a short reply and `<|im_end|>`,
so a correctly exported model stops there and a wrongly exported one does not.
Built once per test process (about 1 s of CPU, plus imports).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gastown_ft.config import EmbeddedModelConfig
from gastown_ft.training.chat_format import render

TINY_EXPORT_BASE = EmbeddedModelConfig(
    vocab_size=600,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    max_position_embeddings=256,
    pretrain_steps=10,
    pretrain_seq_len=128,
    pretrain_batch_size=8,
)

SYSTEM = "You operate a Gas Town rig. Answer with one command."
PROMPT = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "file a bug about the hook"}]
REPLY = "bd create --title 'hook bug' --type bug"

_WORDS = (
    "rig polecat mayor witness refinery convoy bead hook molecule formula deacon crew merge queue "
    "sling nudge mail patrol wisp epic task bug feature priority status ready blocked closed"
).split()
_COMMANDS = ("bd create --title '{a} {b}' --type {t}", "bd close {a}-{n}", "gt sling {a}-{n} {b}", "bd ready")


def conversations(n: int, seed: int = 0) -> list[str]:
    """`n` rendered ChatML conversations about made-up beads: text for the tiny base's pretraining."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rnd.sample(_WORDS, 2)
        reply = rnd.choice(_COMMANDS).format(a=a, b=b, t=rnd.choice(["bug", "task"]), n=rnd.randint(1, 99))
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"please {rnd.choice(_WORDS)} the {a} {b}"},
            {"role": "assistant", "content": reply},
        ]
        out.append(render(messages))
    return out


@dataclass(frozen=True)
class TinyExportModels:
    base_dir: Path
    adapter_dir: Path
    gqa_dir: Path  # random LLaMA with grouped-query attention, an untied output head, padded vocabulary
    smollm_dir: Path  # gqa_dir's weights with a SmolLM-style tokenizer (single digits split first)


def _train_adapter(base_dir: Path, adapter_dir: Path, steps: int = 40) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0, bias="none", task_type="CAUSAL_LM"
    )
    model = get_peft_model(model, lora)
    prompt = tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    ids = tok(prompt + REPLY + "<|im_end|>", add_special_tokens=False, return_tensors="pt")["input_ids"]
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    labels = ids.clone()
    labels[:, :n_prompt] = -100
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(str(adapter_dir))


def _gqa_untied_model(tokenizer_dir: Path, out_dir: Path) -> None:
    """A random LLaMA the embedded builder never makes: 2 key/value heads for 4 query heads (the k
    permutation differs from q's), its own output matrix, and 3 embedding rows past the tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = LlamaConfig(
        vocab_size=len(tok) + 3,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        rope_theta=5000.0,
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger than the default init, so logits differ clearly between tokens
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.15)
            else:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(str(out_dir))
    tok.save_pretrained(str(out_dir))


def _smollm_style_model(model_dir: Path, tokenizer_dir: Path, out_dir: Path) -> None:
    import shutil

    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    shutil.copytree(model_dir, out_dir)
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.save_pretrained(str(out_dir))


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: for models this small a second thread only adds synchronization, and on
    a busy 2-core machine its spin-waits made building them 30x slower (measured: 12.5 s CPU vs 0.45 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_cache: dict[str, TinyExportModels] = {}


def tiny_export_models(tmp_path_factory) -> TinyExportModels:
    """The tiny models, built once per test session under pytest's temporary directory."""
    if "models" not in _cache:
        from gastown_ft.training.base_model import build_embedded_model

        root = Path(tmp_path_factory.mktemp("export-models"))
        base_dir = root / "base"
        with one_torch_thread():
            build_embedded_model(conversations(400), base_dir, TINY_EXPORT_BASE, seed=0, precision="fp32")
            _train_adapter(base_dir, root / "adapter")
            _gqa_untied_model(base_dir, root / "gqa")
            _smollm_style_model(root / "gqa", base_dir, root / "smollm")
        _cache["models"] = TinyExportModels(
            base_dir=base_dir, adapter_dir=root / "adapter", gqa_dir=root / "gqa", smollm_dir=root / "smollm"
        )
    return _cache["models"]
