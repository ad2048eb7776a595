"""Operator-side tools: what runs on an operator's machine, never on a gateway.

The fleet monitor (``monitor*``), the end-to-end demo (``demo*``) and the embedded broker the
demo falls back to. The console may import every other package; nothing imports the console
except the ``iotids`` command registry, lazily.
"""
