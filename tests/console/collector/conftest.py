"""Fixtures of the console tests: a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.console.collector.postgres import Postgres


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster for the module's tests (skipped when the binaries are absent)."""
    pytest.importorskip("psycopg", reason="the [console] extra (psycopg 3) is not installed")
    server = Postgres()
    try:
        server.start()
        yield server
    finally:
        server.stop()
