"""THE feature pipeline: packets, telemetry and host metrics to feature windows.

Training imports this package so that what a model learned is what the gateway computes.
numpy only; no TensorFlow, no per-packet Python objects on the hot path.
"""
