#!/bin/bash
# Install the iotids agent from the files `iotids provision` put on the boot partition.
#
# Run as root at first boot, by firstrun.sh (Raspberry Pi Imager convention) or by cloud-init's
# runcmd; then by iotids-install.service at every boot (and every minute while it fails) until
# one run succeeds. Safe to run again: every step checks what is already there.
#   install.sh          everything: retry unit, user, config, credentials, keys, bundle, units, venv
#   install.sh retry    the same, from iotids-install.service (starts the agent when done)
set -euo pipefail

BOOT_DIR="${IOTIDS_BOOT_DIR:-/boot/firmware}"
# IOTIDS_ROOT: install into another root file system (a mounted image, the tests); "" on a Pi.
ROOT="${IOTIDS_ROOT:-}"
ROOT_ARGS=()
if [ -n "$ROOT" ]; then
    ROOT_ARGS=(--root "$ROOT")
fi
SRC="$BOOT_DIR/iotids"
ETC="$ROOT/etc/iotids"
OPT="$ROOT/opt/iotids"
VENV="$OPT/venv"
UNITS="$ROOT/etc/systemd/system"
PYTHON="${IOTIDS_PYTHON:-python3.11}"
# Written last, by a run that installed everything: iotids-install.service stops retrying.
STAMP="$ETC/installed"

log() {
    echo "iotids-install: $*" >&2
}

on_exit() {
    local status=$?
    if [ "$status" -ne 0 ]; then
        log "install failed (status $status); iotids-install.service retries at every boot and" \
            "every minute until it succeeds"
    fi
}

install_retry_unit() {
    # First of all, so that whatever fails below is retried: at every boot, and every minute
    # while the system is up (Restart=on-failure), until one run writes $STAMP.
    install -d -m 0755 -o root -g root "$UNITS" "$OPT"
    if [ ! "$0" -ef "$OPT/install.sh" ]; then
        install -m 0755 -o root -g root "$0" "$OPT/install.sh"
    fi
    install -m 0644 -o root -g root "$SRC/iotids-install.service" "$UNITS/"
    systemctl "${ROOT_ARGS[@]}" enable iotids-install.service
}

create_user() {
    if ! grep -q '^iotids:' "$ROOT/etc/passwd" 2>/dev/null; then
        useradd "${ROOT_ARGS[@]}" --system --user-group --home-dir /var/lib/iotids \
            --no-create-home --shell /usr/sbin/nologin iotids
        log "created system user iotids"
    fi
}

copy_dir() {
    # copy_dir FROM TO MODE: every regular file of FROM into TO, root-owned, with MODE.
    local from="$1" to="$2" mode="$3" file
    [ -d "$from" ] || return 0
    for file in "$from"/*; do
        [ -f "$file" ] || continue
        install -m "$mode" -o root -g root "$file" "$to/"
    done
}

install_files() {
    install -d -m 0755 -o root -g root "$ETC" "$ETC/keys" "$ETC/bundles" "$OPT"
    install -m 0644 -o root -g root "$SRC/agent.toml" "$ETC/agent.toml"
    copy_dir "$SRC/keys" "$ETC/keys" 0644
    copy_dir "$SRC/bundles" "$ETC/bundles" 0644
    if [ -f "$SRC/ca.crt" ]; then
        install -m 0644 -o root -g root "$SRC/ca.crt" "$ETC/ca.crt"
    fi
    # Credentials are read by systemd (LoadCredential=) as root: 0600 root:root, never the
    # agent's user. The boot partition is FAT and world-readable once mounted: remove them there.
    install -d -m 0700 -o root -g root "$ETC/credentials"
    if [ -d "$SRC/credentials" ]; then
        copy_dir "$SRC/credentials" "$ETC/credentials" 0600
        rm -rf "$SRC/credentials"
        log "installed credentials into $ETC/credentials"
    fi
}

install_units() {
    install -d -m 0755 "$UNITS" "$ROOT/etc/systemd/journald.conf.d"
    install -m 0644 -o root -g root "$SRC/iotids-agent.service" "$UNITS/"
    install -m 0644 -o root -g root "$SRC/journald-iotids.conf" \
        "$ROOT/etc/systemd/journald.conf.d/iotids.conf"
    systemctl "${ROOT_ARGS[@]}" enable iotids-agent.service
}

install_venv() {
    # Offline from the wheelhouse when there is one, else from the package index.
    if [ ! -x "$VENV/bin/python" ] && ! "$PYTHON" -m venv "$VENV"; then
        log "cannot create $VENV with $PYTHON: is python3-venv installed?"
        return 1
    fi
    if [ -d "$SRC/wheelhouse" ]; then
        "$VENV/bin/pip" install --no-index --find-links "$SRC/wheelhouse" iotids
    else
        "$VENV/bin/pip" install iotids
    fi
    "$VENV/bin/iotids" --help >/dev/null
    log "installed the agent into $VENV"
}

have_network() {
    # A route to the outside world; first boot under systemd.run has none yet.
    ip -4 route show default 2>/dev/null | grep -q default
}

mark_installed() {
    install -m 0644 -o root -g root /dev/null "$STAMP"
    systemctl "${ROOT_ARGS[@]}" disable iotids-install.service >/dev/null 2>&1 || true
    log "the agent is installed; iotids-install.service is disabled"
}

main() {
    local mode="${1:-all}"
    trap on_exit EXIT
    install_retry_unit
    create_user
    install_files
    install_units
    if [ -d "$SRC/wheelhouse" ] || have_network; then
        install_venv
        mark_installed
        if [ "$mode" = retry ] && [ -z "$ROOT" ]; then
            systemctl start --no-block iotids-agent.service
        fi
    else
        # No wheelhouse and no network yet (first boot under systemd.run has none): not a
        # failure, iotids-install.service installs from the index once the network is up.
        log "no wheelhouse: the venv is installed by iotids-install.service when online"
    fi
}

main "$@"
