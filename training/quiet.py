"""Training's name for the one TensorFlow quieting, which lives in ``agent.quiet``.

Kept so existing ``from training.quiet import quiet_tensorflow`` imports keep working; new code
imports ``agent.quiet`` directly (converters may not import training).
"""

from __future__ import annotations

from agent.quiet import quiet_tensorflow

__all__ = ["quiet_tensorflow"]
