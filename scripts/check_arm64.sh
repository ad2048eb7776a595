#!/usr/bin/env bash
# The agent on arm64 (Debian Bookworm, the base of Raspberry Pi OS 64-bit) under qemu-user:
# installed from the aarch64 wheelhouse only (no package index), then `iotids verify` and
# `iotids agent replay` on shared captures; events and int8 outputs compared with this machine.
# Needs root (binfmt_misc, debootstrap, chroot). The root is cached in .cache/arm64-root.
# Emulated timings are printed as emulated: they say nothing about a Pi.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="$REPO/.cache"
ROOT="$CACHE/arm64-root"
WHEELS="$CACHE/arm64-wheels"
WORK="$CACHE/arm64-work"
PY="${PYTHON:-$REPO/.venv/bin/python}"
DATASETS="${IOTIDS_DATASETS:-$REPO/../shared/datasets}"
CAPTURES=("$DATASETS/mqttset_reduced_pcap/flood-train.pcap"
          "$DATASETS/ddos_pcaps_stopddos/pkt.TCP.synflood.spoofed.pcap")
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

say() { printf 'check-arm64: %s\n' "$*"; }
[ "$(id -u)" = 0 ] || { say "needs root (binfmt_misc, debootstrap, chroot)"; exit 2; }
for c in "${CAPTURES[@]}"; do [ -r "$c" ] || { say "shared capture missing: $c"; exit 2; }; done

# 1. binfmt_misc: mount it when absent; some containers refuse (then say so and stop).
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    if ! mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null; then
        say "this machine does not allow mounting binfmt_misc: arm64 cannot be emulated here"
        exit 3
    fi
    say "mounted binfmt_misc"
fi

# 2. qemu-user-static and debootstrap from Debian's packages.
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static debootstrap binfmt-support
fi
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
    || { say "qemu-aarch64 is registered without the F flag: chroot cannot find qemu"; exit 3; }

# 3. The Bookworm arm64 root, built once (Python 3.11 comes with it).
if [ ! -e "$ROOT/.complete" ]; then
    say "debootstrap bookworm arm64 into $ROOT (several minutes under emulation)"
    rm -rf "$ROOT.partial"
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$ROOT.partial" http://deb.debian.org/debian
    rm -rf "$ROOT" && mv "$ROOT.partial" "$ROOT" && touch "$ROOT/.complete"
fi

# 4. The aarch64 wheelhouse (the same command a Pi owner runs) with the project's own wheel.
if ! ls "$WHEELS"/iotids-*.whl >/dev/null 2>&1; then
    "$REPO/.venv/bin/iotids" provision wheelhouse --out "$WHEELS"
fi
rm -f "$WHEELS"/iotids-*.whl
"$PY" -m pip wheel --quiet --no-deps --wheel-dir "$WHEELS" "$REPO"

# 5. The two signed int8 bundles (scripts/arm64_bundles.py: a random-weight CNN at 20-packet
# steps and the replay benchmark's hand-set flood rule at 1-second steps).
if [ ! -e "$WORK/rule.bundle" ]; then
    # start clean: a run that failed half way leaves keys that refuse to be overwritten
    rm -rf "$WORK" && mkdir -p "$WORK"
    "$PY" "$REPO/scripts/arm64_bundles.py" "$WORK" "${CAPTURES[@]}" \
        "$DATASETS/mqttset_reduced_pcap/benign-train.pcap"
fi
BUNDLES=(cnn rule)

# 6. Into the root's /tmp (never into the repository), install offline, run.
INSIDE="$ROOT/tmp/iotids-check"
rm -rf "$INSIDE" && mkdir -p "$INSIDE/wheels" "$INSIDE/out"
cp "$WHEELS"/*.whl "$INSIDE/wheels/"
cp "$WORK"/cnn.bundle "$WORK"/cnn.pub "$WORK"/rule.bundle "$WORK"/rule.pub "$REPO/scripts/arm64_probe.py" "${CAPTURES[@]}" "$INSIDE/"
mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
# /sys stays unmounted: with the host's (x86) CPU list in it, XNNPACK's cpuinfo crashes under
# qemu-user; without it cpuinfo prints "failed to parse the list of ... processors" and goes on.
trap 'umount "$ROOT/proc" 2>/dev/null || true' EXIT
say "installing iotids in the arm64 root with pip --no-index"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$ROOT" /bin/sh -ec '
    rm -rf /opt/iotids && python3 -m venv /opt/iotids
    /opt/iotids/bin/pip install --quiet --no-index --find-links /tmp/iotids-check/wheels iotids
'
T="/tmp/iotids-check"
emu_start=$(date +%s.%N)
for b in "${BUNDLES[@]}"; do
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$ROOT" /opt/iotids/bin/iotids verify "$T/$b.bundle" --trust-key "$T/$b.pub" --json \
        > "$INSIDE/out/$b.verify.json" || { say "verify $b failed on arm64"; exit 1; }
    for c in "${CAPTURES[@]}"; do
        name=$b.$(basename "$c")
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$ROOT" /opt/iotids/bin/iotids agent replay --bundle "$T/$b.bundle" \
            --trust-key "$T/$b.pub" --capture "$T/$(basename "$c")" --json \
            > "$INSIDE/out/$name.arm64.jsonl"
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$ROOT" /opt/iotids/bin/python "$T/arm64_probe.py" "$T/$b.bundle" "$T/$b.pub" \
            "$T/$(basename "$c")" "$T/out/$name.arm64.probe.json"
    done
done
emu_end=$(date +%s.%N)

# 7. The same on this machine, then compare.
RESULT="$CACHE/arm64-result"
rm -rf "$RESULT" && mkdir -p "$RESULT" && cp "$INSIDE"/out/* "$RESULT/"
for b in "${BUNDLES[@]}"; do
    for c in "${CAPTURES[@]}"; do
        name=$b.$(basename "$c")
        "$PY" -m agent replay --bundle "$WORK/$b.bundle" --trust-key "$WORK/$b.pub" \
            --capture "$c" --json > "$RESULT/$name.x86.jsonl"
        "$PY" "$REPO/scripts/arm64_probe.py" "$WORK/$b.bundle" "$WORK/$b.pub" "$c" \
            "$RESULT/$name.x86.probe.json"
    done
done
"$PY" "$REPO/scripts/arm64_compare.py" "$RESULT" "$(echo "$emu_end - $emu_start" | bc)"
