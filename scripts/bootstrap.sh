#!/usr/bin/env bash
# Set up a fresh machine for iotids: system tools the tests use, a venv, the package.
# Idempotent; `make demo` and `make test` call it, so a new machine needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${IOTIDS_VENV:-.venv}
EXTRAS=${IOTIDS_EXTRAS:-train,dev,demo,console}

need=()
# venv needs ensurepip, which Debian ships apart from python3
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || need+=(mosquitto)
# mosquitto_pub: the operator's publish-discovery.sh and the README recipes' test use it
command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
command -v mcopy >/dev/null || need+=(mtools)
command -v mkfs.vfat >/dev/null || [ -x /usr/sbin/mkfs.vfat ] || need+=(dosfstools)
command -v tcpdump >/dev/null || [ -x /usr/bin/tcpdump ] || need+=(tcpdump)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || need+=(iproute2)
command -v shellcheck >/dev/null || need+=(shellcheck)
# The collector's tests start a throw-away PostgreSQL server from these binaries.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO=""; fi
    if [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; then
        echo "bootstrap: installing ${need[*]} from Debian's packages" >&2
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "bootstrap: missing ${need[*]} and no root/sudo; as root: apt-get install ${need[*]}" >&2
    fi
fi

stamp="$VENV/.iotids-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
    touch "$stamp"
fi
