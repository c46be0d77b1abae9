#!/bin/sh
# After install or upgrade (deb: "configure"; rpm: 1 = install, 2 = upgrade).
# Works with and without a running systemd (containers, chroots, image builds).
set -e

if ! getent group probe >/dev/null; then
    groupadd --system probe
fi
if ! getent passwd probe >/dev/null; then
    useradd --system --gid probe --home-dir /var/lib/probe --no-create-home \
        --shell /usr/sbin/nologin --comment "probe agent" probe
fi

# Settings may hold secrets: readable by the agent, not by everyone. Only on files we own the defaults of.
for f in /etc/probe/probe.yaml /etc/probe/checks.d/*.yaml; do
    [ -f "$f" ] && chgrp probe "$f" 2>/dev/null || true
done
chgrp probe /etc/probe/checks.d 2>/dev/null || true
# systemd creates the state directory (StateDirectory=); without systemd, `probe run` needs it too.
install -d -o probe -g probe -m 0750 /var/lib/probe

# Byte-compile once as root, so the unprivileged agent never tries to write into /opt/probe.
/opt/probe/bin/python -m compileall -q -j 0 /opt/probe/lib >/dev/null 2>&1 || true

if [ -d /run/systemd/system ] || command -v systemctl >/dev/null 2>&1; then
    # Type=notify-reload needs systemd 253; older ones get the equivalent Type=notify + SIGHUP reload.
    version=$(systemctl --version 2>/dev/null | sed -n '1s/^systemd \([0-9]*\).*/\1/p')
    dropin=/etc/systemd/system/probe.service.d/10-notify-compat.conf
    if [ -n "$version" ] && [ "$version" -lt 253 ]; then
        mkdir -p "${dropin%/*}"
        printf '%s\n' "# Written by the probe package: systemd $version predates Type=notify-reload." \
            "[Service]" "Type=notify" 'ExecReload=/bin/kill -HUP $MAINPID' > "$dropin"
    else
        rm -f "$dropin"
        rmdir "${dropin%/*}" 2>/dev/null || true
    fi
fi

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    case "$1" in
        configure|1)
            if [ -z "$2" ] || [ "$1" = 1 ]; then
                # First install: enable and start (Debian convention for daemons).
                systemctl enable probe.service || true
                systemctl start probe.service || echo "probe: not started; see: journalctl -u probe" >&2
            else
                systemctl try-restart probe.service || true
            fi
            ;;
        2) systemctl try-restart probe.service || true ;;
    esac
else
    echo "probe: no running systemd; start the agent with: probe run (as user probe)" >&2
fi
exit 0
