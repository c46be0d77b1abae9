"""imap: an IMAP server's greeting and CAPABILITY, STARTTLS (RFC 2595) or implicit TLS (RFC 8314), and
optionally LOGIN (RFC 9051). No mailbox is opened. The conversation is ``net/mail``'s."""

from __future__ import annotations

from typing import ClassVar

import probe
from probe.checks.net.conn import Failure
from probe.checks.net.mail import Dialect, MailCheck, Session
from probe.hookspecs import CheckRegistrar


async def command(s: Session, text: str, what: str) -> list[str]:
    """Send a tagged command; the untagged lines before its tagged OK (NO/BAD raise)."""
    s.tag += 1
    tag = f"p{s.tag}"
    await s.send(f"{tag} {text}")
    untagged: list[str] = []
    while True:
        line = await s.line()
        if line.startswith(f"{tag} "):
            status = line[len(tag) + 1:]
            if status.upper().startswith("OK"):
                return untagged
            raise Failure("auth_failed" if what == "LOGIN" else "protocol_error",
                          f"{what} answered {status[:120]!r}")
        if not line.startswith(("* ", "+ ")):
            raise Failure("protocol_error", f"not an IMAP response to {what}: {line[:120]!r}")
        untagged.append(line[2:])


def quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Imap(Dialect):
    name = "IMAP"
    port = 143
    tls_port = 993

    async def greet(self, s: Session) -> None:
        line = await s.line()
        s.greeting = line
        if line.upper().startswith("* BYE"):
            raise Failure("service_unavailable", f"the server says goodbye at once: {line[:120]!r}")
        if not line.upper().startswith(("* OK", "* PREAUTH")):
            raise Failure("protocol_error", f"not an IMAP greeting: {line[:120]!r}")

    async def capabilities(self, s: Session) -> list[str]:
        for line in await command(s, "CAPABILITY", "CAPABILITY"):
            if line.upper().startswith("CAPABILITY "):
                return line.split()[1:]
        raise Failure("protocol_error", "CAPABILITY answered without a capability list")

    async def starttls(self, s: Session) -> None:
        try:
            await command(s, "STARTTLS", "STARTTLS")
        except Failure as exc:
            raise Failure("starttls_failed", exc.message) from None

    async def login(self, s: Session, user: str, password: str) -> None:
        await command(s, f"LOGIN {quoted(user)} {quoted(password)}", "LOGIN")

    async def quit(self, s: Session) -> None:
        s.tag += 1
        await s.send(f"p{s.tag} LOGOUT")


class ImapCheck(MailCheck):
    """IMAP greeting and capabilities; STARTTLS, implicit TLS and LOGIN when asked."""

    type = "imap"
    dialect: ClassVar[Dialect] = Imap()


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(ImapCheck)
