"""Hardware-in-the-loop test and certification rig for spinal therapy tables."""

__version__ = "0.1.0"
