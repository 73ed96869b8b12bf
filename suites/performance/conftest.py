"""Performance suite fixtures."""

import pytest

from .steps import Steps


@pytest.fixture(scope="session")
def steps():
    """Static steps, measured once per session."""
    return Steps()
