#!/bin/sh
# /usr/lib/probe/host-setup: what the .deb and .rpm maintainer scripts share. They run it as root:
#   host-setup install   after install or upgrade: user, group, modes, byte code, systemd and sysctl drop-ins
#   host-setup remove    before removal (not upgrade): undo the drop-ins; purging is left to postrm,
#                        which runs when this file is already gone
# Works with and without a running systemd (containers, chroots and image builds have none), and
# never calls systemctl: enabling and starting are the package manager's conventions (deb-systemd-helper,
# %systemd_post), in the maintainer scripts.
set -e

compat_dropin=/etc/systemd/system/probe.service.d/10-notify-compat.conf
ping_conf=/etc/sysctl.d/60-probe-ping.conf
ping_range=/proc/sys/net/ipv4/ping_group_range

on_install() {
    getent group probe >/dev/null || groupadd --system probe
    if ! getent passwd probe >/dev/null; then
        useradd --system --gid probe --home-dir /var/lib/probe --no-create-home \
            --shell /usr/sbin/nologin --comment "probe agent" probe
    fi
    # Settings may hold secrets: readable by the agent (and admins in group probe), not by everyone.
    for f in /etc/probe/probe.yaml /etc/probe/checks.d/*.yaml; do
        [ -f "$f" ] && chgrp probe "$f" 2>/dev/null || true
    done
    chgrp probe /etc/probe/checks.d 2>/dev/null || true
    # systemd creates the state directory (StateDirectory=); without systemd, `probe run` needs it too.
    install -d -o probe -g probe -m 0750 /var/lib/probe
    # Byte-compile once as root, so the unprivileged agent never tries to write into /opt/probe.
    /opt/probe/bin/python -m compileall -q -j 0 /opt/probe/lib >/dev/null 2>&1 || true
    notify_compat
    ping_sockets
}

# Type=notify-reload needs systemd 253; older ones get the equivalent Type=notify + SIGHUP reload. The
# version comes from the manager binary, which answers --version without a running systemd.
notify_compat() {
    manager=/usr/lib/systemd/systemd
    [ -x "$manager" ] || manager=/lib/systemd/systemd
    [ -x "$manager" ] || return 0
    version=$("$manager" --version 2>/dev/null | sed -n '1s/^systemd \([0-9]*\).*/\1/p')
    if [ -n "$version" ] && [ "$version" -lt 253 ]; then
        mkdir -p "${compat_dropin%/*}"
        printf '%s\n' "# Written by the probe package: systemd $version predates Type=notify-reload." \
            "[Service]" "Type=notify" 'ExecReload=/bin/kill -HUP $MAINPID' > "$compat_dropin"
    else
        remove_compat
    fi
}

# The icmp check uses unprivileged ICMP ("ping") sockets, which the kernel allows to the groups in
# net.ipv4.ping_group_range. Debian's default, "1 0", allows none (systemd upstream opens it to all);
# then, and only then, allow the probe group alone, now and at boot. A range someone set is left alone.
ping_sockets() {
    gid=$(getent group probe | cut -d: -f3)
    current=$(tr -s '\t ' '  ' < "$ping_range" 2>/dev/null || true)
    if [ -f "$ping_conf" ] || [ "$current" = "1 0" ]; then
        mkdir -p "${ping_conf%/*}"
        printf '%s\n' "# Written by the probe package: unprivileged ICMP sockets for group probe (gid $gid)," \
            "# so the icmp check needs no CAP_NET_RAW. Removed with the package. docs/deployment.md." \
            "net.ipv4.ping_group_range = $gid $gid" > "$ping_conf"
        if [ "$current" = "1 0" ]; then
            echo "$gid $gid" > "$ping_range" 2>/dev/null || true
        fi
    fi
}

remove_compat() {
    rm -f "$compat_dropin"
    rmdir "${compat_dropin%/*}" 2>/dev/null || true
}

on_remove() {
    remove_compat
    if [ -f "$ping_conf" ]; then
        gid=$(getent group probe | cut -d: -f3)
        rm -f "$ping_conf"
        # Close again what we opened (only if nobody changed it since).
        current=$(tr -s '\t ' '  ' < "$ping_range" 2>/dev/null || true)
        if [ -n "$gid" ] && [ "$current" = "$gid $gid" ]; then
            echo "1 0" > "$ping_range" 2>/dev/null || true
        fi
    fi
}

case "$1" in
    install) on_install ;;
    remove) on_remove ;;
    *) echo "usage: $0 install|remove" >&2; exit 64 ;;
esac
