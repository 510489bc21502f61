"""Shared fixtures. Data from ../shared is read through `shared_samples`, which skips when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GASTOWN_FT_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_samples() -> Path:
    path = SHARED / "gastown-samples"
    if not path.is_dir():
        pytest.skip(f"../shared/gastown-samples is absent ({path}); the real-data tests need it")
    return path


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    path = SHARED / "gastown-reference"
    if not path.is_dir():
        pytest.skip(f"../shared/gastown-reference is absent ({path})")
    return path


@pytest.fixture(scope="session")
def demo_town(tmp_path_factory):
    """The demo town, built once per test session (read-only for tests)."""
    from gastown_ft.demo.town import build_demo_town

    return build_demo_town(tmp_path_factory.mktemp("demo"), seed=7)


from gastown_ft_tests.pg_fixture import postgres  # noqa: E402,F401  (session fixture: a throwaway cluster)

# Tests make many throwaway Dagster instances; none of them phones home.
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory):
    """The demo town materialized through `lora_adapter` with the tiny model, once per session.

    Yields (settings, instance, town). Tests may materialize further assets on this instance, but must
    not change its town or artifacts in place (copy them first)."""
    from dagster import DagsterInstance

    from gastown_ft.demo.town import build_demo_town
    from gastown_ft.orchestrate import asset_names_through, materialize_assets
    from gastown_ft_tests.tiny import tiny_settings

    work = tmp_path_factory.mktemp("tiny_trained")
    town = build_demo_town(work / "demo", seed=7)
    settings = tiny_settings(work, town)
    with DagsterInstance.local_temp(str(settings.dagster.home)) as instance:
        result = materialize_assets(settings, instance, asset_names_through("lora_adapter"))
        assert result.success, [e.message for e in result.all_events if e.is_step_failure]
        yield settings, instance, town


from gastown_ft_tests.smollm2 import smollm2_dir  # noqa: E402,F401  (session fixture: the real base model)
