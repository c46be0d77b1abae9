#!/bin/sh
# .rpm %post: 1 = install, 2 = upgrade. Like %systemd_post: enable on first install (the preset
# default for a daemon package here), restart a running agent on upgrade.
set -e

/usr/lib/probe/host-setup install

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    if [ "$1" = 1 ]; then
        systemctl enable probe.service || true
        systemctl start probe.service || echo "probe: not started; see: journalctl -u probe" >&2
    else
        systemctl try-restart probe.service || true
    fi
else
    echo "probe: no running systemd; start the agent with: probe run (as user probe)" >&2
fi
exit 0
