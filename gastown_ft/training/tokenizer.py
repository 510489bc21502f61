"""A byte-level BPE tokenizer trained on the scrubbed corpus, carrying the one chat format.

Byte-level: every string round-trips (no unknown characters, no normalization). The six
`SPECIAL_TOKENS` of `chat_format` get ids 0-5, in that order, and always encode as one id each; the
tokenizer adds none of them by itself (the chat template writes `<s>`), so `tok(text)` is the plain
text and `tok.apply_chat_template(...)` is exactly `chat_format.render(...)`.

Saved with `save_pretrained`, it reloads with `AutoTokenizer.from_pretrained` (in transformers 5 as
class `TokenizersBackend`) with the same ids, special tokens, chat template and padding side.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from gastown_ft.training.chat_format import (
    BOS,
    CHAT_TEMPLATE,
    EOS,
    PAD,
    SPECIAL_TOKENS,
    TURN_END,
    TURN_START,
    UNK,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# 256 byte symbols + the special tokens: the smallest vocabulary that can hold a single merge.
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS) + 1
DEFAULT_MODEL_MAX_LENGTH = 1024


def _strings(texts: Iterable[str]) -> Iterator[str]:
    for t in texts:
        if t:
            yield t


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, *, model_max_length: int = DEFAULT_MODEL_MAX_LENGTH
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of at most `vocab_size` ids on `texts` (consumed once, streamed).

    The result is deterministic for the same texts in the same order. A small corpus can yield
    fewer ids than asked for: `len(tokenizer)` is the real size.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"vocab_size must be at least {MIN_VOCAB_SIZE} (got {vocab_size})")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    # Keeps offsets right; adds no tokens (the chat template writes <s> itself).
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_strings(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[TURN_START, TURN_END],
        model_max_length=model_max_length,
        padding_side="right",
        truncation_side="right",
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
