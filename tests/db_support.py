"""Databases for the results tests: a SQLite file, or a fresh database on the PostgreSQL server
that .ci/run starts (RIG_TEST_PG_URL). Without that server the PostgreSQL tests skip, except in
CI (CI=1), where they fail: a CI run must not pass without having tested PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

PG_ENV = "RIG_TEST_PG_URL"


def pg_url() -> str:
    """The server's URL, or skip (locally) / fail (CI) without it."""
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {PG_ENV} is not: the PostgreSQL tests must run in CI")
        pytest.skip(f"{PG_ENV} unset: no PostgreSQL server (source .ci/postgres.sh; pg_start)")
    return url


@contextmanager
def fresh_pg() -> Iterator[str]:
    """A new, empty database on the test server for one test; dropped afterwards."""
    base = sa.make_url(pg_url())
    name = f"rig_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
