#!/bin/sh
# .rpm %preun: 0 = erase, 1 = upgrade.
set -e

if [ "$1" = 0 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop probe.service || true
        systemctl disable probe.service || true
    fi
    /usr/lib/probe/host-setup remove
fi
# Byte code written by %post is not in the package's file list: remove it so that erasing leaves
# /opt/probe empty and rpm can delete it.
if [ -d /opt/probe ]; then
    find /opt/probe -depth -type d -name __pycache__ -exec rm -rf {} + 2>/dev/null || true
fi
exit 0
