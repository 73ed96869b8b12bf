"""The line's results database: where it is (a SQLite file or a PostgreSQL URL), opened and
migrated to the newest schema (Alembic revisions in `migrations/`, shipped inside the package)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from ...errors import ConfigError

HEAD = "0002"  # the newest migration (tests check it is Alembic's head)
LEGACY_REVISION = "0001"  # what the hand-written schema (SQLite user_version 1) equals
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DB_URL_ENV = "RIG_DB_URL"
DIALECTS = ("sqlite", "postgresql")


class ResultsError(ConfigError):
    """The database or a record cannot be used as results (`rig` prints it as a one-line error)."""


DatabaseError = ResultsError


def is_url(spec: str | Path) -> bool:
    """True if `spec` is a database URL rather than a file path."""
    return isinstance(spec, str) and "://" in spec


def database_url(spec: str | Path) -> sa.URL:
    """The SQLAlchemy URL for a SQLite file path or a database URL, validated.

    Accepted: a path (SQLite), `sqlite:///PATH`, `postgresql://...` (driven by psycopg 3) or
    `postgresql+psycopg://...`. Anything else is a DatabaseError naming the value."""
    if not is_url(spec):
        return sa.URL.create("sqlite", database=str(Path(spec)))
    try:
        url = make_url(str(spec))
    except ArgumentError:
        raise DatabaseError(
            f"database URL {_hide(str(spec))!r}: not a URL; expected a file path, "
            "sqlite:///PATH or postgresql://USER@HOST:PORT/DBNAME"
        ) from None
    if url.get_backend_name() not in DIALECTS:
        raise DatabaseError(
            f"database URL {_hide(str(spec))!r}: unsupported database "
            f"{url.get_backend_name()!r}; expected one of {list(DIALECTS)}"
        )
    if url.get_backend_name() == "postgresql":
        if url.get_driver_name() not in ("psycopg", "psycopg2") or url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        if not url.database:
            raise DatabaseError(
                f"database URL {_hide(str(spec))!r}: no database name "
                "(postgresql://USER@HOST:PORT/DBNAME)"
            )
    elif not url.database:
        raise DatabaseError(f"database URL {_hide(str(spec))!r}: no file (sqlite:///PATH)")
    return url


def describe(url: sa.URL) -> str:
    """The URL as printed in messages: without its password."""
    return url.render_as_string(hide_password=True)


def _hide(text: str) -> str:
    try:
        return describe(make_url(text))
    except ArgumentError:
        return text


def create_engine(url: sa.URL, *, timeout: float = 30.0) -> Engine:
    """An engine for the results database; every call to it is bounded by `timeout` seconds.

    SQLite: every transaction takes the write lock up front (BEGIN IMMEDIATE), so two processes
    ingesting the same run cannot both decide it is new, and waits up to `timeout` for it.
    PostgreSQL: a connect timeout and a statement timeout."""
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url, connect_args={"timeout": timeout}, poolclass=sa.pool.NullPool
        )

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi: sqlite3.Connection, _record: Any) -> None:
            # autocommit at the driver: transactions are begun below, explicitly
            dbapi.isolation_level = None
            dbapi.execute("PRAGMA foreign_keys = ON")

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    ms = int(timeout * 1000)
    return sa.create_engine(
        url,
        connect_args={
            "connect_timeout": max(1, int(timeout)),
            "options": f"-c statement_timeout={ms}",
        },
        pool_pre_ping=True,
    )


def _legacy_version(conn: sa.Connection) -> int:
    if conn.dialect.name != "sqlite":
        return 0
    return int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)


def current_revision(conn: sa.Connection) -> str | None:
    """The schema revision the database is at (None: no schema yet)."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def migrate(engine: Engine, where: str) -> None:
    """Bring the database to HEAD (creating it, or upgrading an older one); refuse a newer one.

    One migrating process at a time: SQLite's write lock (BEGIN IMMEDIATE), PostgreSQL's
    transaction-level advisory lock; DDL is transactional in both, so a failed migration leaves
    the previous revision."""
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7226173)")
            rev = current_revision(conn)
            if rev == HEAD:
                return
            legacy = _legacy_version(conn)
            if rev is None and legacy > 1:
                raise DatabaseError(
                    f"{where}: results schema version {legacy}, this rig reads 1 (migrated) or "
                    f"revision {HEAD}"
                )
            if rev is not None and rev not in _revisions():
                raise DatabaseError(
                    f"{where}: results schema revision {rev!r} is newer than this rig's "
                    f"{HEAD!r}: update the rig"
                )
            _upgrade(conn, stamp=LEGACY_REVISION if rev is None and legacy == 1 else None)
    except OperationalError as e:
        raise DatabaseError(f"{where}: cannot open the results database: {_first(e)}") from None


def _revisions() -> set[str]:
    return {p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py")}


def _upgrade(conn: sa.Connection, *, stamp: str | None) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    if stamp is not None:
        # a database made by the hand-written schema: it is revision 0001 already
        command.stamp(cfg, stamp)
    command.upgrade(cfg, "head")


def _first(e: SQLAlchemyError) -> str:
    orig = getattr(e, "orig", None) or e
    return " ".join(str(orig).split())[:300]


def default_url() -> str | None:
    """$RIG_DB_URL, if set: the line's database for every command that takes --db."""
    return os.environ.get(DB_URL_ENV) or None
