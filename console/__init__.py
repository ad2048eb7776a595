"""Operator-side tools: what runs on an operator's machine, never on a gateway.

The fleet monitor (``monitor*``), the end-to-end demo (``demo*``), the embedded broker the
demo falls back to, and the collector (``collector/``: a fleet into a database and
Prometheus). The console may import every other package; nothing imports the console except
the ``iotids`` command registry, lazily.
"""
