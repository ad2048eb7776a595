"""Tests of the built-in traffic and telemetry generator (training/synth)."""
