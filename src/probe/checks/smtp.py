"""smtp: an SMTP server's greeting, its EHLO capabilities, STARTTLS (RFC 3207) or implicit TLS (RFC 8314),
and optionally AUTH PLAIN/LOGIN (RFC 4954). No mail is sent. The conversation is ``net/mail``'s."""

from __future__ import annotations

import base64
import socket
from typing import ClassVar

import probe
from probe.checks.net.conn import Failure
from probe.checks.net.mail import Dialect, MailCheck, Session, plain
from probe.hookspecs import CheckRegistrar


async def reply(s: Session, doing: str) -> tuple[int, list[str]]:
    """One (multi-line) reply: its code and its lines without the code."""
    lines: list[str] = []
    while True:
        line = await s.line()
        if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
            raise Failure("protocol_error", f"not an SMTP reply {doing}: {line[:120]!r}")
        lines.append(line[4:])
        if line[3:4] != "-":
            return int(line[:3]), lines


class Smtp(Dialect):
    name = "SMTP"
    port = 25
    tls_port = 465

    async def greet(self, s: Session) -> None:
        code, lines = await reply(s, "as the greeting")
        s.greeting = f"{code} {' '.join(lines)}"
        if code != 220:
            raise Failure("service_unavailable", f"the server greets with {s.greeting[:120]!r}, not 220")

    async def capabilities(self, s: Session) -> list[str]:
        await s.send(f"EHLO {_helo_name()}")
        code, lines = await reply(s, "to EHLO")
        if code != 250:
            raise Failure("protocol_error", f"EHLO refused: {code} {' '.join(lines)[:120]}")
        return lines[1:]  # the first line is the server's name

    async def starttls(self, s: Session) -> None:
        await s.send("STARTTLS")
        code, lines = await reply(s, "to STARTTLS")
        if code != 220:
            raise Failure("starttls_failed", f"STARTTLS refused: {code} {' '.join(lines)[:120]}")

    async def login(self, s: Session, user: str, password: str) -> None:
        offered = " ".join(c.upper() for c in s.capabilities if c.upper().startswith("AUTH"))
        if "LOGIN" in offered.split() and "PLAIN" not in offered.split():
            await s.send("AUTH LOGIN")
            for secret in (user, password):
                code, lines = await reply(s, "to AUTH LOGIN")
                if code != 334:
                    break
                await s.send(base64.b64encode(secret.encode()).decode())
            else:
                code, lines = await reply(s, "to AUTH LOGIN")
        else:
            await s.send(f"AUTH PLAIN {plain(user, password)}")
            code, lines = await reply(s, "to AUTH PLAIN")
        if code != 235:
            raise Failure("auth_failed", f"login as {user} refused: {code} {' '.join(lines)[:120]}")

    async def quit(self, s: Session) -> None:
        await s.send("QUIT")


def _helo_name() -> str:
    return socket.gethostname() or "localhost"


class SmtpCheck(MailCheck):
    """SMTP greeting and capabilities; STARTTLS, implicit TLS and AUTH when asked."""

    type = "smtp"
    dialect: ClassVar[Dialect] = Smtp()


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(SmtpCheck)
