"""``probe run``: the composition root of the daemon.

:func:`run_daemon` wires the agent (``probe.daemon.wiring.serve``: state restored from the store, history,
metrics, remediation, forecasts), tells systemd about its life (``probe.daemon.systemd``) and runs the loop
until SIGTERM/SIGINT.
"""

from __future__ import annotations

import faulthandler

from probe.config.load import Plan
from probe.daemon.systemd import SystemdLifecycle
from probe.daemon.wiring import Reload, serve
from probe.engine import aio
from probe.engine.interfaces import Lifecycle
from probe.plugins.manager import Registry
from probe.sinks.logsink import LogSink


def run_daemon(plan: Plan, registry: Registry, *, reload: Reload | None = None,
               lifecycle: Lifecycle | None = None) -> int:
    """Run the agent until SIGTERM/SIGINT; return the exit code. ``reload`` loads and validates the config
    again (raising :class:`~probe.config.ConfigErrors` when it is bad) on SIGHUP."""
    # A watchdog kill (SIGABRT) or a crash in C code prints every thread's Python stack to stderr (the
    # journal), so the log shows where the agent hung, not just that systemd killed it.
    faulthandler.enable()
    raise_fd_limit()
    if lifecycle is None:
        lifecycle = SystemdLifecycle.from_environ()  # a no-op outside systemd
    return aio.run(serve(plan, registry, reload=reload, lifecycle=lifecycle, extra_sinks=[LogSink()]))


FD_WANTED = 65536


def raise_fd_limit() -> int:
    """Raise the soft descriptor limit towards the hard one (to ``FD_WANTED``), as systemd advises daemons
    that do not use select(): 1,024 is little for hundreds of checks beside the metrics endpoint. Under the
    unit the syscall filter forbids it and ``LimitNOFILE=`` sets both. Returns the soft limit in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FD_WANTED if hard == resource.RLIM_INFINITY else min(hard, FD_WANTED)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            return wanted
        except (OSError, ValueError):
            pass
    return soft
