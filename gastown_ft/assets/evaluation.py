"""Evaluation assets (group `evaluation`): placeholder until the evaluation work fills it."""

evaluation_assets: list = []
evaluation_checks: list = []
