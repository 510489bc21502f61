"""Gas Town-native lifecycle: what gastown-ft tells the town, and how training makes way for it.

- feed.py: events appended to the town's `.events.jsonl` in Gas Town's own schema;
- clis.py / outbox.py: `bd` and `gt` commands, or the outbox file when they are not installed;
- run_bead.py / mail.py / summaries.py: the bead of a training run, the mail that sums a run up, and
  the one-line summaries of each stage's figures;
- reporting.py / hooks.py: the reporter of a run and the one decorator each pipeline asset wears;
- drift.py: a corpus that changed past the retrain threshold while retraining is off;
- status.py: what `gastown-ft status` and a run's closing note say about the town;
- formula_check.py / formula_install.py: the `mol-gastown-ft-train` formula, checked and installed;
- yielding.py / priority.py: training that pauses for a busy box and runs at a lower priority.
"""
