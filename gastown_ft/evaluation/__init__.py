"""Evaluation: the base model against the tuned one (plain functions; the Dagster asset is a thin adapter).

- generate.py: load a model (with its LoRA adapter), greedy batched generation in the chat format;
- heldout.py: per-task held-out loss and perplexity on the test split;
- tasks.py: the Gas Town task suite (command validity, exact answers, formula authoring);
- promptfoo.py: promptfoo patrol suites (gt-model-eval) loaded and scored offline;
- guard.py: general-text perplexity on Python standard-library docstrings;
- compare.py: the pass/fail decision; report.py: results.json, report.md and `load_eval_results`;
- run.py: all of it, end to end.
"""

from gastown_ft.evaluation.report import load_eval_results

__all__ = ["load_eval_results"]
