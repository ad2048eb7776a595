#!/bin/bash
# iotids-provision: first boot on Raspberry Pi OS Bookworm, Raspberry Pi Imager's way.
# cmdline.txt carries
#   systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot
#   systemd.unit=kernel-command-line.target
# (or Imager's own systemd.run=/boot/firstrun.sh, when `iotids provision --image` found Imager's
# firstrun.sh and chained it). This runs Imager's settings first (user, SSH, Wi-Fi, locale), then
# installs the iotids agent, removes the hook and itself, and the system reboots.
set -uo pipefail  # no -e: Imager's settings and the agent's install each run and report

BOOT_DIR="${IOTIDS_BOOT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
# IOTIDS_ROOT: the root file system install.sh writes into ("" on a Pi; a scratch root in tests).
ROOT="${IOTIDS_ROOT:-}"
IMAGER="$BOOT_DIR/iotids/imager-firstrun.sh"
RETRY_UNIT="$ROOT/etc/systemd/system/iotids-install.service"

log() {
    echo "iotids firstrun: $*" >&2
}

if [ -f "$IMAGER" ]; then
    status=0
    bash "$IMAGER" || status=$?
    if [ "$status" -ne 0 ]; then
        log "Raspberry Pi Imager's firstrun.sh failed with status $status"
    else
        log "applied Raspberry Pi Imager's settings"
    fi
    # It ran once, as Imager intends; it may already have removed the hook (its own cleanup).
    rm -f "$IMAGER"
fi

status=0
bash "$BOOT_DIR/iotids/install.sh" || status=$?
if [ "$status" -ne 0 ]; then
    if [ ! -f "$RETRY_UNIT" ]; then
        # Nothing else would retry: keep this hook, the next boot runs the install again.
        log "install.sh failed with status $status before its retry unit was in place;" \
            "keeping the first-boot hook: the next boot tries again"
        exit 0
    fi
    log "install.sh failed with status $status; iotids-install.service retries at every boot" \
        "until it succeeds (journalctl -u iotids-install)"
fi

# Boot normally from now on (with the network, which the retry unit may need). Remove only the
# hook's three parameters: whatever follows them on the line stays.
sed -i -e 's| systemd\.run[=_][^ ]*||g' -e 's| systemd\.unit=kernel-command-line\.target||g' \
    "$BOOT_DIR/cmdline.txt"
rm -f "$BOOT_DIR/firstrun.sh"
exit 0
