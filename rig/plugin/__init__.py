"""The pytest plugin of the rig (entry point `rig`): options, markers, hooks, fixtures by role.

The session state lives on one `RigPlugin` object registered in pytest_configure and reached
through `config.stash[SESSION_KEY]`; the fixtures come from the rig.fixtures modules, loaded as
plugins of their own. Outputs (rig.outputs.sinks) answer `pytest_rig_sinks`; live views answer
`pytest_rig_subscribe` and follow the event channel (rig.plugin.events).
"""

from __future__ import annotations

import pytest

from . import hookspecs
from .hooks import RigPlugin
from .options import add_to_pytest
from .session import CHECK_KEY, SESSION_KEY, RigSession

__all__ = ["CHECK_KEY", "PLUGIN_KEY", "SESSION_KEY", "RigPlugin", "RigSession"]

# fixtures by role, registered with this plugin
pytest_plugins = [
    "rig.fixtures.station",
    "rig.fixtures.table",
    "rig.fixtures.instruments",
    "rig.fixtures.record",
    "rig.plugin.progress",  # step events, expected device times, the events file
]

PLUGIN_KEY = pytest.StashKey[RigPlugin]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """The rig's own hooks: output sinks and event subscribers."""
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Every option, with its ini twin, from the one table (rig.plugin.options)."""
    add_to_pytest(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Register markers and the session's plugin object (lazy: no I/O here); let the views
    subscribe to the event channel."""
    config.addinivalue_line(
        "markers", "verifies(test): the test body verifies every requirement whose `test` is this"
    )
    config.addinivalue_line("markers", "safety: a safety requirement test")
    config.addinivalue_line("markers", "performance: a performance requirement test")
    plugin = RigPlugin(config)
    config.pluginmanager.register(plugin, RigPlugin.name)
    config.stash[PLUGIN_KEY] = plugin
    config.stash[SESSION_KEY] = plugin.session
    config.hook.pytest_rig_subscribe.call_historic(
        kwargs={"config": config, "events": plugin.session.events}
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop an emulated bench we started."""
    plugin = config.stash.get(PLUGIN_KEY, None)
    if plugin is not None:
        plugin.unconfigure()
        config.pluginmanager.unregister(plugin)
