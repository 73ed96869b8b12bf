"""Instrument drivers: one declarative class per instrument model."""
