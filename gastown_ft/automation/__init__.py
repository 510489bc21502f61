"""What the sensors compare, without Dagster: stat-based snapshots of the town, cursors and diffs.

Snapshots never read file contents (one stat per file, git HEAD from the files under .git), so a
sensor tick stays cheap; the readers in gastown_ft.corpus do the parsing when a run is requested.
"""
