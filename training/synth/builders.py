"""Every attack kind's builder, by the name a scenario's ``kind`` uses."""

from __future__ import annotations

from training.synth.attacks import (
    Builder,
    arp_spoof,
    http_get_flood,
    icmp_flood,
    ssh_bruteforce,
    syn_flood,
    tcp_syn_scan,
    telnet_bruteforce,
    udp_flood,
    udp_scan,
)
from training.synth.attacks_mqtt import (
    mqtt_bruteforce,
    mqtt_connect_flood,
    mqtt_publish_flood,
    mqtt_slowdos,
)

BUILDERS: dict[str, Builder] = {
    "syn_flood": syn_flood,
    "udp_flood": udp_flood,
    "icmp_flood": icmp_flood,
    "http_get_flood": http_get_flood,
    "tcp_syn_scan": tcp_syn_scan,
    "udp_scan": udp_scan,
    "telnet_bruteforce": telnet_bruteforce,
    "ssh_bruteforce": ssh_bruteforce,
    "mqtt_connect_flood": mqtt_connect_flood,
    "mqtt_bruteforce": mqtt_bruteforce,
    "mqtt_publish_flood": mqtt_publish_flood,
    "mqtt_slowdos": mqtt_slowdos,
    "arp_spoof": arp_spoof,
}
