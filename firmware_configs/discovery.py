"""The operator's half of provisioning: Home Assistant discovery for one gateway.

A discovery config names its Home Assistant device inside its payload, which no broker ACL can
check: a gateway allowed to write discovery topics could put entities under another gateway's
device. So the example broker keeps gateways out of ``homeassistant/`` and the operator publishes
each gateway's configs, once, retained. ``iotids provision`` renders them into
``operator/publish-discovery.sh`` (never copied to the gateway's SD card): the same configs the
agent would announce itself (``agent.report.homeassistant``), published with ``mosquitto_pub``.
"""

from __future__ import annotations

import shlex

from agent.report.homeassistant import discovery_messages

SCRIPT = "publish-discovery.sh"


def render_publish_script(
    device_id: str, topic_prefix: str = "iotids", discovery_prefix: str = "homeassistant"
) -> str:
    """A POSIX shell script publishing ``device_id``'s discovery configs, retained, at QoS 1.

    The CLI has checked ``device_id``; it is quoted here anyway, and refused where a comment
    would have to hold a line break (ValueError).
    """
    if any(not c.isprintable() for c in device_id):
        raise ValueError(f"device id {device_id!r}: a control character cannot go in a script")
    lines = [
        "#!/bin/sh",
        f"# Home Assistant discovery for iotids gateway {device_id} (from `iotids provision`).",
        "# Run it once as an operator (the example broker lets only operators write",
        f"# {discovery_prefix}/), with mosquitto_pub's connection options, e.g.:",
        "#   sh publish-discovery.sh -h broker.lan -p 8883 --cafile ca.crt -u iotids-operator -P X",
        "# Each config is retained: Home Assistant finds it whenever it (re)starts. To remove the",
        "# device, publish an empty retained message on each topic (mosquitto_pub -r -n -t TOPIC).",
        "set -eu",
        'command -v mosquitto_pub >/dev/null || { echo "mosquitto_pub not found: apt-get install'
        ' mosquitto-clients" >&2; exit 1; }',
        "publish() {",
        '    topic="$1"; payload="$2"; shift 2',
        '    mosquitto_pub "$@" -q 1 -r -t "$topic" -m "$payload"',
        "}",
    ]
    for topic, payload in discovery_messages(device_id, topic_prefix, discovery_prefix):
        lines.append(f'publish {shlex.quote(topic)} {shlex.quote(payload.decode())} "$@"')
    done = shlex.quote(f"published {device_id}'s Home Assistant discovery")
    lines.append(f"echo {done} >&2")
    return "\n".join(lines) + "\n"
