"""Hooks the rig plugin adds to pytest: its output sinks and its event subscribers."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec
def pytest_rig_sinks(config: pytest.Config) -> list[Any]:
    """Return the sinks (rig.plugin.sinks.Sink) to hand the ended run to, in order."""


@pytest.hookspec(historic=True)
def pytest_rig_subscribe(config: pytest.Config, events: Any) -> None:
    """Subscribe to the run's live events (`events` is a rig.plugin.events.EventBus). Historic:
    a plugin registered later (a conftest found while collecting) is called on registration."""
