#!/bin/sh
# After removal (deb: "remove" / "purge" / "upgrade"...; rpm: 0 = erase, 1 = upgrade).
set -e

case "$1" in
    remove|purge|0)
        rm -f /etc/systemd/system/probe.service.d/10-notify-compat.conf
        rmdir /etc/systemd/system/probe.service.d 2>/dev/null || true
        [ -d /run/systemd/system ] && systemctl daemon-reload || true
        ;;
esac
if [ "$1" = 0 ]; then
    # rpm has no purge: keep the history, drop the directory only when it is empty.
    rmdir /var/lib/probe 2>/dev/null || true
fi
if [ "$1" = purge ]; then
    # History and state. The probe user stays (files elsewhere may still belong to it; Debian policy).
    rm -rf /var/lib/probe
    rmdir /etc/probe/checks.d /etc/probe/plugins /etc/probe 2>/dev/null || true
fi
exit 0
