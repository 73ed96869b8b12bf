"""Test-wide setup: signing keys go to a temporary directory, never the user's home."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _key_dir(tmp_path_factory):
    os.environ["RIG_KEY_DIR"] = str(tmp_path_factory.mktemp("keys"))
    yield
