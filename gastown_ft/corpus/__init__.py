"""Plain-Python corpus core: readers, scrubbing, pairs, splits. Never imports Dagster."""
