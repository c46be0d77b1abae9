"""StrictModes, as sshd has them: as root, never trust a file another user could have written.

probe runs checks and remediation commands as root; a checks file, ``probe.yaml``, a plugin or a
``${file:...}`` secret that another user can change would hand them root. So, when running as root, each
such file and every directory above it must be owned by root and not writable by group or others. A
root-owned directory with the sticky bit (``/tmp``) is accepted: others cannot rename or replace what
root keeps in it.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path


def strict_modes_apply() -> bool:
    """StrictModes guard root; an unprivileged agent can only hurt its own user."""
    return os.geteuid() == 0


def unsafe_file(path: Path) -> str | None:
    """Why root must not read ``path``, naming the file, its mode and the fix; None when it is safe.

    A missing or unreadable file is not judged here: whoever reads it reports that.
    """
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    seen: set[Path] = set()
    for candidate in (real, *real.parents, *path.absolute().parents):
        if candidate in seen:
            continue
        seen.add(candidate)
        try:
            st = candidate.stat()
        except OSError:
            continue
        problem = _problem(st)
        if problem is None:
            continue
        what, fix = problem
        subject = f"{path}" if candidate == real else f"{path}: directory {candidate}"
        fixes = " && ".join(f"{f} {candidate}" for f in fix)
        return (f"{subject} {what}; as root probe only reads files that no other user can change "
                f"(StrictModes): {fixes}")
    return None


def _problem(st: os.stat_result) -> tuple[str, list[str]] | None:
    wrong_owner = st.st_uid not in (0, os.geteuid())
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX and st.st_uid == 0:
        writable = 0
    problems, fixes = [], []
    if wrong_owner:
        problems.append(f"is owned by {describe_user(st.st_uid)}, not root")
        fixes.append("chown root")
    if writable:
        who = " and ".join(w for w, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if writable & bit)
        problems.append(f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o})")
        fixes.append("chmod go-w")
    return (" and ".join(problems), fixes) if problems else None


def describe_user(uid: int) -> str:
    """``user NAME (uid N)``, or ``uid N`` for a uid without a name."""
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
