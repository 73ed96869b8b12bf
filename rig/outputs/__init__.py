"""Outputs: sinks that take one ended run (certificate, results database, statistics)."""
