#!/bin/sh
# Before removal or upgrade (deb: "remove" / "upgrade" / "deconfigure"; rpm: 0 = erase, 1 = upgrade).
set -e

case "$1" in
    remove|deconfigure|0)
        if [ -d /run/systemd/system ]; then
            systemctl stop probe.service || true
            systemctl disable probe.service || true
        fi
        ;;
esac

# Byte code written by postinst (and by any root run of probe) is not in the package's file list:
# remove it so that removal leaves /opt/probe empty and dpkg/rpm can delete it.
if [ -d /opt/probe ]; then
    find /opt/probe -depth -type d -name __pycache__ -exec rm -rf {} + 2>/dev/null || true
fi
exit 0
