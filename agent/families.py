"""Attack families: the few kinds of attack an operator acts on, whatever a model's labels are.

A label is what a model was trained to name (a capture file's name, a dataset's class); its
family is what the operator is told first. Every label maps to exactly one of ``FAMILIES`` or to
``BENIGN``. Training writes label -> family into the bundle manifest's ``categories``; the agent
reads it back through ``family_for`` so bundles made before families existed (categories such as
``dos`` or ``recon``) still report a family.

Built-in rules know the labels of the datasets this project reads (MQTTset, the DDoS and
port-scan captures, CICIoT2023, NSL-KDD, TON_IoT, N-BaIoT and the synthetic generator's attack
kinds): first an exact table, then keywords in a fixed order (``synscan`` is a scan, not a
flood). A label no rule knows has no built-in family (``builtin_family`` returns None); callers
decide whether that is an error or ``unknown``.
"""

from __future__ import annotations

import re

FLOOD = "flood"
AMPLIFICATION = "amplification"
SCAN = "scan"
BRUTEFORCE = "bruteforce"
PROTOCOL_ABUSE = "protocol-abuse"
MALFORMED = "malformed"
SPOOFING = "spoofing"
UNKNOWN = "unknown"
BENIGN = "benign"

# Attack families, in the order an operator reads them; "unknown" is an attack of no known family.
FAMILIES: tuple[str, ...] = (
    FLOOD,
    AMPLIFICATION,
    SCAN,
    BRUTEFORCE,
    PROTOCOL_ABUSE,
    MALFORMED,
    SPOOFING,
    UNKNOWN,
)
BENIGN_LABELS = frozenset({"benign", "normal", "none", "benigntraffic", "benign_traffic"})

# Exact names whose family the keywords would get wrong or cannot see.
_EXACT: dict[str, str] = {
    # MQTTset: MaliciousDoS opens many MQTT sessions, SlowITe holds them open with keep-alives.
    "malariados": PROTOCOL_ABUSE,
    "slowite": PROTOCOL_ABUSE,
    "flood": FLOOD,
    # The synthetic generator's MQTT kinds.
    "mqtt_connect_flood": FLOOD,
    "mqtt_publish_flood": FLOOD,
    "mqtt_slowdos": PROTOCOL_ABUSE,
    "arp_spoof": SPOOFING,
    # NSL-KDD categories and attacks (Tavallaee et al.'s grouping; nearest family otherwise).
    "r2l": PROTOCOL_ABUSE,
    "u2r": PROTOCOL_ABUSE,
    "smurf": AMPLIFICATION,
    "pod": MALFORMED,
    "teardrop": MALFORMED,
    "land": MALFORMED,
    "neptune": FLOOD,
    "back": FLOOD,
    "apache2": FLOOD,
    "processtable": FLOOD,
    "mailbomb": FLOOD,
    "worm": FLOOD,
    "satan": SCAN,
    "nmap": SCAN,
    "saint": SCAN,
    **dict.fromkeys(
        [
            "ftp_write",
            "imap",
            "phf",
            "multihop",
            "warezmaster",
            "warezclient",
            "spy",
            "xlock",
            "xsnoop",
            "snmpgetattack",
            "httptunnel",
            "sendmail",
            "named",
            "buffer_overflow",
            "loadmodule",
            "rootkit",
            "perl",
            "sqlattack",
            "xterm",
            "ps",
        ],
        PROTOCOL_ABUSE,
    ),
    # CICIoT2023 / TON_IoT classes outside the network families: the nearest one.
    "webattack": PROTOCOL_ABUSE,
    "web": PROTOCOL_ABUSE,
    "uploading": PROTOCOL_ABUSE,
    "malware": PROTOCOL_ABUSE,
    "ransomware": PROTOCOL_ABUSE,
    "backdoor": PROTOCOL_ABUSE,
    "backdoor_malware": PROTOCOL_ABUSE,
    # Classes that say "an attack" and nothing more (binary label modes, anomaly models).
    "attack": UNKNOWN,
    "anomaly": UNKNOWN,
}

# Keyword rules in order: the first family whose keyword is in the label wins.
_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (MALFORMED, ("malformed", "fuzz", "fragment")),
    (AMPLIFICATION, ("amplif", "reflect", "fraggle")),
    # "spoofed" alone is not enough: a SYN flood from spoofed sources is a flood.
    (SPOOFING, ("spoofing", "arp_spoof", "arpspoof", "dns_spoof", "mitm", "poison")),
    (SCAN, ("scan", "recon", "probe", "sweep")),
    (BRUTEFORCE, ("brute", "password", "passwd", "dictionary", "guess", "credential")),
    (PROTOCOL_ABUSE, ("slow", "inject", "xss", "sql", "hijack", "abuse", "backdoor", "upload")),
    (FLOOD, ("flood", "dos", "mirai", "gafgyt", "storm", "udp", "syn", "ack", "junk", "combo")),
)
_TOKENS = re.compile(r"[^a-z0-9]+")


def normal_name(label: str) -> str:
    """A label as the rules see it: lower case, outer spaces gone, ``-`` / space as ``_``."""
    return re.sub(r"[\s-]+", "_", label.strip().lower())


def is_benign(name: str) -> bool:
    """True for the benign family or a benign label (``benign``, ``normal``, ``BenignTraffic``)."""
    return normal_name(name) in BENIGN_LABELS or normal_name(name) == BENIGN


def check_family(name: str) -> str:
    """``name`` as a family (``benign`` allowed), or ValueError listing the families."""
    family = normal_name(name).replace("_", "-")
    if family == BENIGN or family in FAMILIES:
        return family
    raise ValueError(f"must be one of {', '.join((*FAMILIES, BENIGN))}, got {name!r}")


def builtin_family(label: str) -> str | None:
    """The family the built-in rules give ``label``; None when no rule knows it."""
    name = normal_name(label)
    if not name:
        return None
    if is_benign(name):
        return BENIGN
    as_family = name.replace("_", "-")
    if as_family in FAMILIES:
        return as_family
    if name in _EXACT:
        return _EXACT[name]
    tokens = [t for t in _TOKENS.split(name) if t]
    # "amp" alone is too short a keyword ("example"); as a whole token or a suffix it is not.
    if any(t == "amp" or t.endswith("amp") for t in tokens):
        return AMPLIFICATION
    for family, keywords in _KEYWORDS:
        if any(k in name for k in keywords):
            return family
    return None


def family_of(label: str) -> str:
    """The built-in family of ``label``, ``unknown`` when no rule knows it."""
    return builtin_family(label) or UNKNOWN


def family_for(label: str, category: str | None) -> str:
    """The family to report for a manifest's ``label`` and its ``categories`` entry.

    A category that is a family wins; an older bundle's category (``dos``, ``recon``) is mapped
    by the built-in rules, then the label is; a label nothing knows is ``unknown``.
    """
    if category:
        try:
            return check_family(category)
        except ValueError:
            pass
        known = builtin_family(category)
        if known is not None:
            return known
    return family_of(label)


__all__ = [
    "BENIGN",
    "BENIGN_LABELS",
    "FAMILIES",
    "UNKNOWN",
    "builtin_family",
    "check_family",
    "family_for",
    "family_of",
    "is_benign",
    "normal_name",
]
