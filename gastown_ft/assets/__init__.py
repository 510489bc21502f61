"""Thin Dagster layer: one module per stage; each asset calls into the plain-Python core."""
