"""Benchmarks: measured figures printed as one table (`python -m benchmarks`), never asserted."""
