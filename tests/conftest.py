"""Test-wide setup: signing keys go to a temporary directory, never the user's home.

Also the fixtures of the table emulator tests that serve a table over real sockets (the helpers
behind them are in emulator_support.py).
"""

import asyncio
import os
import threading
from collections.abc import Callable, Iterator

import pytest

# Imported here, before any pytester run: pytester removes the modules a run imported (the
# results sink imports SQLAlchemy), and SQLAlchemy's compiled extensions do not survive being
# imported a second time in one process ("'InternalTraversal' object is not callable").
import sqlalchemy  # noqa: F401
from emulator_support import Plc, connect, serve_table, stop_server

from rig.emulators.table import TableBase


@pytest.fixture(scope="session", autouse=True)
def _key_dir(tmp_path_factory):
    os.environ["RIG_KEY_DIR"] = str(tmp_path_factory.mktemp("keys"))
    yield


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An asyncio loop on its own thread for the module's Modbus servers."""
    lp = asyncio.new_event_loop()
    th = threading.Thread(target=lp.run_forever, name="plc-test-loop", daemon=True)
    th.start()
    yield lp
    lp.call_soon_threadsafe(lp.stop)
    th.join(timeout=5)
    lp.close()


@pytest.fixture
def serve(loop) -> Iterator[Callable[..., Plc]]:
    """serve(table, wrap=False): the table served over Modbus TCP with a client; closed after."""
    made: list[Plc] = []

    def make(table: TableBase, *, wrap: bool = False) -> Plc:
        server = serve_table(loop, table)
        plc = Plc(table.world, table, server, connect(server.port), wrap=wrap)
        made.append(plc)
        return plc

    yield make
    for plc in made:
        plc.client.close()
        stop_server(loop, plc.server)
