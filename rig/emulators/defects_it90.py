"""Seeded defects of the emulated IT-90: (name, requirements it breaks, description)."""

IT90_DEFECTS: tuple[tuple[str, tuple[str, ...], str], ...] = ()
