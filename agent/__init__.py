"""iotids agent: what runs on the gateway (stdlib, numpy, paho-mqtt, psutil, a TFLite runtime)."""

__version__ = "0.1.0"
