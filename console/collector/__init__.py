"""The operator-side collector: a fleet's events and stats into SQLite or PostgreSQL.

Runs on an operator's machine or server, never on a gateway. ``store`` holds the tables,
``metrics`` the Prometheus exposition of fleet health, ``consumer`` the MQTT 5 shared
subscription that feeds both, ``cli`` the ``iotids collect`` command.
"""
