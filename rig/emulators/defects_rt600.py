"""Seeded defects of the emulated RT-600: (name, requirements it breaks, description)."""

RT600_DEFECTS: tuple[tuple[str, tuple[str, ...], str], ...] = ()
