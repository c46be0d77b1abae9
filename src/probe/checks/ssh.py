"""ssh: the server's identification banner and protocol version, its host key against pinned fingerprints,
and optionally a public-key login.

The banner alone (the common case, what check_ssh and blackbox's ssh_banner do) is read by this module
over a bare socket: no key exchange, no library. Host-key pinning and login need the key exchange, done by
``asyncssh`` (the ``ssh`` extra, imported on first use): the server must prove it holds the key whose
SHA256 fingerprint is pinned (the exchange hash is signed), so a pin cannot be met by a copied public key.
"""

from __future__ import annotations

import re
import time
import warnings
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

import probe
from probe.checks.net.conn import Failure, IpVersion, Timings, connect, os_failure, show_address
from probe.checks.net.stream import Stream
from probe.hookspecs import CheckRegistrar

CLIENT_ID = f"SSH-2.0-probe_{probe.__version__}"
_MAX_LINE = 255  # RFC 4253 4.2, CR LF included
_MAX_PRELUDE = 8 * 1024  # lines a server may send before its identification
_IDENT = re.compile(r"SSH-(?P<proto>[0-9.]+)-(?P<software>[!-,.-~]+)(?: (?P<comments>.*))?")
_FINGERPRINT = re.compile(r"(?:SHA256:)?([A-Za-z0-9+/]{43})=?")


class SshLogin(probe.Options):
    """A public-key login to prove that ``user`` can get in with ``key_file``; no command is run."""

    user: str
    """User name to log in as."""
    key_file: str
    """Private key file (OpenSSH or PEM format)."""
    passphrase: SecretStr | None = None
    """Passphrase of ``key_file``, if it is encrypted (use ``${file:...}``; never shown)."""


class SshOptions(probe.Options):
    host: str
    """Host name or address of the SSH server."""
    port: int = Field(22, ge=1, le=65535)
    """TCP port."""
    ip_version: IpVersion = "any"
    """``any``, ``ipv4``, ``ipv6``, ``prefer_ipv4`` or ``prefer_ipv6``."""
    banner: str | None = None
    """Regular expression the identification line (``SSH-2.0-OpenSSH_9.2p1 Debian-2``) must match."""
    host_key_sha256: list[str] = []
    """Pinned host key fingerprints, as ``ssh-keygen -lf`` prints them (``SHA256:...``); one of them must
    match the key the server proves it holds."""
    host_key_algorithms: list[str] = []
    """Host key algorithms to ask for, in order (``ssh-ed25519``, ``rsa-sha2-512``, ...): which of the
    server's keys is checked against ``host_key_sha256``. Default: asyncssh's order."""
    login: SshLogin | None = None
    """Log in with a key: ``{user: deploy, key_file: /etc/probe/ssh/id_ed25519}``."""

    @field_validator("host_key_sha256", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("host_key_sha256")
    @classmethod
    def _fingerprints(cls, value: list[str]) -> list[str]:
        out = []
        for text in value:
            match = _FINGERPRINT.fullmatch(text.strip())
            if match is None:
                raise ValueError(f"{text!r} is not a SHA256 fingerprint (SHA256: and 43 base64 characters, as "
                                 "ssh-keygen -lf prints)")
            out.append(f"SHA256:{match.group(1)}")
        return out

    @model_validator(mode="after")
    def _library(self) -> SshOptions:
        """The banner needs nothing; pinning and login need asyncssh, said at validation, not at run time."""
        import importlib.util

        if (self.host_key_sha256 or self.login is not None) and importlib.util.find_spec("asyncssh") is None:
            raise ValueError("host_key_sha256 and login need the asyncssh package: pip install 'probe-monitor[ssh]'")
        return self

    @field_validator("banner")
    @classmethod
    def _banner(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value


class SshCheck(probe.Check[SshOptions]):
    """Banner (always), host key (when pinned), login (when configured)."""

    type = "ssh"
    measurements = frozenset({"duration", "dns", "connect", "banner", "handshake", "auth"})
    units = {"duration": "s", "dns": "s", "connect": "s", "banner": "s", "handshake": "s", "auth": "s"}

    async def run(self, ctx: probe.Context) -> probe.Result:
        o = self.options
        started = time.monotonic()
        timings = Timings()
        details: dict[str, Any] = {}
        doing = ["connecting"]
        failure: Failure | None = None
        banner_only = not (o.host_key_sha256 or o.login is not None)
        try:
            async with ctx.time_limit():
                if banner_only:
                    await self._banner_only(timings, details, doing)
                else:
                    await self._key_exchange(timings, details, doing)
        except TimeoutError:
            failure = Failure("timeout", f"timed out {doing[-1]}")
        except OSError as exc:
            failure = os_failure(exc, doing[-1])
        except Failure as exc:
            failure = exc
        # The identification alone goes through stream.Stream: the target's time (docs/decisions/0031); asyncssh's
        # key exchange, or a failure, by the wall.
        took = timings.target() if banner_only and failure is None else time.monotonic() - started
        measurements = [probe.Measurement("duration", took, "s"), *timings.measurements()]
        target = show_address((o.host, o.port))
        if failure is not None:
            return probe.Result.critical(f"{target}: {failure.message}", *measurements, reason=failure.reason,
                                         details=details)
        said = [details.get("banner", "")]
        if "host_key_sha256" in details:
            said.append(f"host key {details['host_key_type']} {details['host_key_sha256']}")
        if o.login is not None:
            said.append(f"logged in as {o.login.user}")
        return probe.Result.ok(f"{target}: " + "; ".join(s for s in said if s), *measurements, details=details)

    async def _banner_only(self, timings: Timings, details: dict[str, Any], doing: list[str]) -> None:
        o = self.options
        stream = await Stream.open(o.host, o.port, o.ip_version, timings)
        try:
            doing.append("waiting for the SSH identification")
            before = timings.target()
            line = await _identification(stream)
            timings.extra["banner"] = timings.target() - before
            self._judge_banner(line, details)
            await stream.send(f"{CLIENT_ID}\r\n".encode())  # so the server logs a client, not a scanner
        finally:
            stream.close()

    def _judge_banner(self, line: str, details: dict[str, Any]) -> None:
        match = _IDENT.fullmatch(line)
        if match is None:
            raise Failure("protocol_error", f"not an SSH identification: {line[:120]!r}")
        details.update(banner=line, protocol_version=match["proto"], software=match["software"])
        if match["comments"]:
            details["comments"] = match["comments"]
        if match["proto"] not in ("2.0", "1.99"):
            raise Failure("protocol_mismatch", f"the server speaks SSH {match['proto']} only ({line[:120]!r})")
        if self.options.banner is not None and not re.search(self.options.banner, line):
            raise Failure("banner_mismatch", f"identification {line[:120]!r} does not match /{self.options.banner}/")

    async def _key_exchange(self, timings: Timings, details: dict[str, Any], doing: list[str]) -> None:
        asyncssh = _asyncssh()
        o = self.options
        sock, _peer = await connect(o.host, o.port, o.ip_version, timings)
        doing.append("in the SSH key exchange")
        seen: dict[str, Any] = {}
        started = time.monotonic()
        try:
            if o.login is None:
                key = await asyncssh.get_server_host_key(sock=sock, server_host_key_algs=o.host_key_algorithms or (),
                                                         client_version=CLIENT_ID.split("-", 2)[2])
                seen["key"] = key
                conn = None
            else:
                conn = await self._login(asyncssh, sock, seen, timings, doing, started)
        except asyncssh.PermissionDenied as exc:
            raise Failure("auth_failed", f"login as {o.login.user if o.login else '?'} refused: "
                                         f"{exc.reason or 'permission denied'}") from None
        except asyncssh.HostKeyNotVerifiable:
            raise self._mismatch(seen.get("key"), details) from None
        except asyncssh.KeyImportError as exc:
            raise Failure("login_config", f"cannot use key_file: {exc}") from None
        except asyncssh.DisconnectError as exc:
            raise Failure("protocol_error", f"the server ended the SSH session {doing[-1]}: {exc.reason}") from None
        except OSError as exc:
            if o.login is not None and getattr(exc, "filename", None) == o.login.key_file:
                raise Failure("login_config", f"cannot read key_file {o.login.key_file}: {exc.strerror}") from None
            raise
        finally:
            sock.close()
        timings.extra.setdefault("handshake", time.monotonic() - started)
        self._record(seen.get("key"), details)
        if conn is not None:
            details["banner"] = conn.get_extra_info("server_version")
            conn.close()
        key = seen.get("key")
        if key is None:
            raise Failure("protocol_error", "the server presented no host key")
        if o.host_key_sha256 and key.get_fingerprint("sha256") not in o.host_key_sha256:
            raise self._mismatch(key, details)

    async def _login(self, asyncssh: Any, sock: Any, seen: dict[str, Any], timings: Timings, doing: list[str],
                     started: float) -> Any:
        o = self.options
        assert o.login is not None
        pins = o.host_key_sha256

        class Client(asyncssh.SSHClient):  # type: ignore[misc,name-defined]
            def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
                seen["key"] = key
                timings.extra["handshake"] = time.monotonic() - started
                doing.append("logging in")
                return not pins or key.get_fingerprint("sha256") in pins

            def auth_banner_received(self, msg: str, lang: str) -> None:
                seen["auth_banner"] = msg

        passphrase = o.login.passphrase.get_secret_value() if o.login.passphrase else None
        conn, _client = await asyncssh.create_connection(
            Client, sock=sock, username=o.login.user, client_keys=[o.login.key_file], passphrase=passphrase,
            known_hosts=() if pins else None, server_host_key_algs=o.host_key_algorithms or (),
            client_version=CLIENT_ID.split("-", 2)[2], password=None, kbdint_auth=False, agent_path=None,
            preferred_auth="publickey", config=None, login_timeout=None)
        if "key" not in seen:  # without pins asyncssh does not ask us: read it from the connection
            seen["key"] = conn.get_server_host_key()
        timings.extra["auth"] = time.monotonic() - started - timings.extra.get("handshake", 0.0)
        return conn

    def _record(self, key: Any, details: dict[str, Any]) -> None:
        if key is not None:
            details.update(host_key_type=key.get_algorithm(), host_key_sha256=key.get_fingerprint("sha256"))

    def _mismatch(self, key: Any, details: dict[str, Any]) -> Failure:
        self._record(key, details)
        got = f"{key.get_algorithm()} {key.get_fingerprint('sha256')}" if key is not None else "an unknown key"
        return Failure("host_key_mismatch", f"the server's host key is {got}, not one pinned in host_key_sha256 "
                                            f"({', '.join(self.options.host_key_sha256)})")


async def _identification(stream: Stream) -> str:
    """The server's ``SSH-`` line; RFC 4253 lets it send other lines first. Bounded reads throughout."""
    data = b""
    while True:
        while b"\n" not in data:
            if len(data) > _MAX_LINE:
                raise Failure("protocol_error", f"a line longer than {_MAX_LINE} bytes before the identification: "
                                                f"{data[:60]!r}")
            chunk = await stream.recv(512)
            if not chunk:
                raise Failure("protocol_error", "the server closed the connection before identifying itself"
                              + (f" (it said {data[:120]!r})" if data else ""))
            data += chunk
        line, data = data.split(b"\n", 1)
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        if text.startswith("SSH-"):
            return text
        if len(data) + len(line) > _MAX_PRELUDE:
            raise Failure("protocol_error", f"no SSH identification in the first {_MAX_PRELUDE} bytes")


def _asyncssh() -> Any:
    with warnings.catch_warnings():  # cryptography's DSA deprecation, once per process, is not ours to show
        warnings.simplefilter("ignore")
        import asyncssh
    return asyncssh


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(SshCheck)
