"""Fixtures for the export tests: the SmolLM2 preset (skips with the reason where it is not installed)."""

from gastown_ft_tests.smollm2 import smollm2_dir  # noqa: F401
