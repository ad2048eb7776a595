"""The attack-family taxonomy: built-in rules for the datasets' labels, validation, old bundles."""

from __future__ import annotations

import pytest

from agent.families import (
    BENIGN,
    FAMILIES,
    UNKNOWN,
    builtin_family,
    check_family,
    family_for,
    family_of,
    is_benign,
)
from training.synth.scenario import ATTACK_KINDS

KNOWN = {
    # MQTTset capture file labels
    "bruteforce": "bruteforce",
    "flood": "flood",
    "malariados": "protocol-abuse",
    "malformed": "malformed",
    "slowite": "protocol-abuse",
    # DDoS / port-scan captures, as named in the recipe and as shipped
    "synflood": "flood",
    "snmpamp": "amplification",
    "synackamp": "amplification",
    "amp.TCP.syn.optionallyACK.optionallysamePort": "amplification",
    "amp.UDP.snmp.src161": "amplification",
    "pkt.TCP.synflood.spoofed": "flood",
    "synscan": "scan",
    # CICIoT2023 families and raw classes
    "DDoS": "flood",
    "DoS": "flood",
    "Mirai": "flood",
    "Recon": "scan",
    "Spoofing": "spoofing",
    "BruteForce": "bruteforce",
    "WebAttack": "protocol-abuse",
    "DDoS-SYN_Flood": "flood",
    "Recon-PortScan": "scan",
    "MITM-ArpSpoofing": "spoofing",
    "DictionaryBruteForce": "bruteforce",
    # NSL-KDD categories and a few attacks
    "Probe": "scan",
    "R2L": "protocol-abuse",
    "neptune": "flood",
    "smurf": "amplification",
    "guess_passwd": "bruteforce",
    # TON_IoT types
    "scanning": "scan",
    "password": "bruteforce",
    "xss": "protocol-abuse",
    # N-BaIoT file classes
    "doorbell_udp": "flood",
    "scan": "scan",
}
SYNTH = {
    "syn_flood": "flood",
    "udp_flood": "flood",
    "icmp_flood": "flood",
    "http_get_flood": "flood",
    "tcp_syn_scan": "scan",
    "udp_scan": "scan",
    "telnet_bruteforce": "bruteforce",
    "ssh_bruteforce": "bruteforce",
    "mqtt_connect_flood": "flood",
    "mqtt_bruteforce": "bruteforce",
    "mqtt_publish_flood": "flood",
    "mqtt_slowdos": "protocol-abuse",
    "arp_spoof": "spoofing",
}


@pytest.mark.parametrize(("label", "family"), sorted((KNOWN | SYNTH).items()))
def test_builtin_rules_name_the_datasets_labels(label: str, family: str) -> None:
    assert builtin_family(label) == family


def test_every_generator_kind_has_a_family() -> None:
    assert set(SYNTH) == set(ATTACK_KINDS)
    assert all(builtin_family(kind) in FAMILIES for kind in ATTACK_KINDS)


@pytest.mark.parametrize("label", ["benign", "Normal", "BenignTraffic", "benign_traffic"])
def test_benign_labels_are_benign(label: str) -> None:
    assert is_benign(label)
    assert builtin_family(label) == BENIGN


@pytest.mark.parametrize("label", ["example", "camera", "zzz", "", "  "])
def test_a_label_no_rule_knows_has_no_builtin_family(label: str) -> None:
    assert builtin_family(label) is None
    assert family_of(label) == UNKNOWN


def test_binary_attack_classes_are_unknown_not_a_guess() -> None:
    assert builtin_family("attack") == UNKNOWN
    assert builtin_family("anomaly") == UNKNOWN


def test_check_family_accepts_families_and_names_them_when_not() -> None:
    assert check_family("Protocol_Abuse") == "protocol-abuse"
    assert check_family("benign") == "benign"
    with pytest.raises(ValueError, match=r"flood, amplification.*got 'dos'"):
        check_family("dos")


def test_family_for_reads_new_and_old_manifests() -> None:
    assert family_for("synflood", "flood") == "flood"
    assert family_for("flood", "dos") == "flood"  # a bundle made before families
    assert family_for("scan", "recon") == "scan"
    assert family_for("weird", "process") == UNKNOWN
    assert family_for("synscan", None) == "scan"
    assert family_for("benign", "benign") == BENIGN
