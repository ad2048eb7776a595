#!/bin/bash
# First boot on Raspberry Pi OS Bookworm, Raspberry Pi Imager's way: cmdline.txt carries
#   systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot
#   systemd.unit=kernel-command-line.target
# This installs the iotids agent, removes that hook and itself, and the system reboots into
# a gateway that starts detecting.
set -euo pipefail

BOOT_DIR="${IOTIDS_BOOT_DIR:-/boot/firmware}"

status=0
bash "$BOOT_DIR/iotids/install.sh" || status=$?
if [ "$status" -ne 0 ]; then
    echo "iotids firstrun: install.sh failed with status $status" >&2
fi

# Never boot into this script again, even after a failure (Imager's firstrun.sh does the same).
# Remove only the hook's three parameters: whatever follows them on the line stays.
sed -i -e 's| systemd\.run[=_][^ ]*||g' -e 's| systemd\.unit=kernel-command-line\.target||g' \
    "$BOOT_DIR/cmdline.txt"
rm -f "$BOOT_DIR/firstrun.sh"
exit 0
