"""Outputs: sinks that each take one ended run (certificate, results database, statistics,
reports)."""
