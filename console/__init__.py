"""Operator-side tools: they run beside the broker, never on a gateway."""
