"""The session-scoped `postgres` fixture: one throwaway PostgreSQL cluster for the whole test session.

Import it into conftest.py (`from gastown_ft_tests.pg_fixture import postgres`) or load this module as a
plugin (`pytest -p gastown_ft_tests.pg_fixture`). It yields a `PgInfo` whose database `dagster` exists;
tests that want an empty database of their own call `create_database(postgres, "name")`. Skips, with
the reason, where the PostgreSQL server binaries are missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gastown_ft_tests.pgcluster import PgInfo, pg_bin_or_skip, throwaway_postgres

__all__ = ["postgres"]


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgInfo]:
    bin_dir = pg_bin_or_skip()
    with throwaway_postgres(tmp_path_factory.mktemp("pg"), bin_dir=bin_dir) as pg:
        yield pg
