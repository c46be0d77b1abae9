"""pop3: a POP3 server's greeting and CAPA (RFC 2449), STLS (RFC 2595) or implicit TLS (RFC 8314), and
optionally USER/PASS. No message is read. The conversation is ``net/mail``'s."""

from __future__ import annotations

from typing import ClassVar

import probe
from probe.checks.net.conn import Failure
from probe.checks.net.mail import Dialect, MailCheck, Session
from probe.hookspecs import CheckRegistrar


async def status(s: Session, what: str, reason: str = "protocol_error") -> str:
    line = await s.line()
    if line.startswith("+OK"):
        return line
    if line.startswith("-ERR"):
        raise Failure(reason, f"{what} answered {line[:120]!r}")
    raise Failure("protocol_error", f"not a POP3 reply to {what}: {line[:120]!r}")


class Pop3(Dialect):
    name = "POP3"
    port = 110
    tls_port = 995
    starttls_word = "STLS"

    async def greet(self, s: Session) -> None:
        s.greeting = await status(s, "the connection", "service_unavailable")

    async def capabilities(self, s: Session) -> list[str]:
        await s.send("CAPA")
        await status(s, "CAPA")
        out = []
        while (line := await s.line()) != ".":
            out.append(line[1:] if line.startswith("..") else line)
        return out

    async def starttls(self, s: Session) -> None:
        await s.send("STLS")
        await status(s, "STLS", "starttls_failed")

    async def login(self, s: Session, user: str, password: str) -> None:
        await s.send(f"USER {user}")
        await status(s, "USER", "auth_failed")
        await s.send(f"PASS {password}")
        await status(s, "PASS", "auth_failed")

    async def quit(self, s: Session) -> None:
        await s.send("QUIT")


class Pop3Check(MailCheck):
    """POP3 greeting and capabilities; STLS, implicit TLS and USER/PASS when asked."""

    type = "pop3"
    dialect: ClassVar[Dialect] = Pop3()


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(Pop3Check)
