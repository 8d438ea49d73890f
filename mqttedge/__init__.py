"""The one MQTT adapter: every stallwatch subscriber connects to the broker through it.

A package of its own, below both of its users: ``ingest`` (the durable receiver)
and ``marketview`` (the live view) import it, and it imports neither, only
paho-mqtt and the process's one backoff policy from ``storage``.
"""

from mqttedge.client import RECONNECT_BACKOFF, EdgeMessage, EdgeOptions, MqttEdge

__all__ = ["RECONNECT_BACKOFF", "EdgeMessage", "EdgeOptions", "MqttEdge"]
