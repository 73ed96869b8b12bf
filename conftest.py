"""Root conftest: the rig plugin is registered by entry point (pyproject.toml)."""
