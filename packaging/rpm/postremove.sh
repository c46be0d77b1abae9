#!/bin/sh
# .rpm %postun: 0 = erase, 1 = upgrade. rpm has no purge: history is kept unless empty.
set -e

if [ "$1" = 0 ]; then
    rmdir /var/lib/probe 2>/dev/null || true
    rm -rf /etc/probe/plugins/__pycache__
    [ -d /run/systemd/system ] && systemctl daemon-reload || true
fi
exit 0
