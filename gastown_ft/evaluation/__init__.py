"""Evaluation: the base model against the tuned one (plain functions; the Dagster asset is a thin adapter).

- generate.py: load a model (with its LoRA adapter), greedy batched generation in the chat format;
- heldout.py: per-task held-out loss and perplexity on the test split;
- tasks.py: the Gas Town task suite (command validity, exact answers, formula authoring);
- promptfoo.py: promptfoo patrol suites (gt-model-eval) loaded and scored offline;
- guard.py: general-text perplexity on Python standard-library docstrings;
- retrieval.py: the "prompting" arms' BM25 context; episodes_eval.py: the simulated town's episodes;
  safety.py: the safety suite; canary.py: planted secrets watched in every generation;
- observe.py: the decoder every generation goes through (canaries, cost, cut prompts); cost.py:
  latency, tokens/s and peak memory per arm; arms.py: the one table, a row per metric, a column per arm;
- compare.py: the pass/fail decision; report.py: results.json, report.md and `load_eval_results`;
- run.py: all of it, end to end.
"""

from gastown_ft.evaluation.report import load_eval_results

__all__ = ["load_eval_results"]
