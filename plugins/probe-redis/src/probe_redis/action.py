"""redis-command: a remediation action that sends one allow-listed command to Redis.

Only commands that relieve pressure without losing data are allowed; FLUSHALL, DEL, SHUTDOWN and the like
can never be configured, whatever the config says.
"""

from __future__ import annotations

from probe.actions import Action, ActionContext, ActionResult
from pydantic import Field, field_validator

from probe_redis.connection import ConnectionOptions, client, failure, where

# Allowed command prefixes (upper-cased words) and what each is for.
ALLOWED: dict[tuple[str, ...], str] = {
    ("MEMORY", "PURGE"): "ask the allocator to release dirty pages",
    ("BGSAVE",): "start a background snapshot",
    ("BGREWRITEAOF",): "compact the append-only file",
    ("SCRIPT", "KILL"): "stop a long-running Lua script",
    ("FUNCTION", "KILL"): "stop a long-running function",
    ("CLIENT", "KILL"): "disconnect clients (with filters such as TYPE pubsub or IDLE)",
    ("CONFIG", "SET", "MAXMEMORY"): "raise (or lower) the memory limit",
    ("CONFIG", "SET", "MAXMEMORY-POLICY"): "change the eviction policy",
}


class RedisCommandOptions(ConnectionOptions):
    command: list[str] = Field(min_length=1)
    """The command and its arguments, one list item each (``[MEMORY, PURGE]``); only allow-listed ones."""

    @field_validator("command")
    @classmethod
    def _allowed(cls, command: list[str]) -> list[str]:
        words = tuple(w.upper() for w in command)
        if not any(words[:len(prefix)] == prefix for prefix in ALLOWED):
            allowed = ", ".join(" ".join(p) for p in ALLOWED)
            raise ValueError(f"{' '.join(command[:3])!r} is not an allowed remediation command; allowed: {allowed}")
        return command


class RedisCommandAction(Action):
    """``remediate: [{on: critical, action: redis-command, with: {command: [MEMORY, PURGE]}}]``"""

    name = "redis-command"
    Options = RedisCommandOptions

    def describe(self) -> str:
        return f"send {' '.join(self.options.command)} to {where(self.options.url)}"

    async def run(self, ctx: ActionContext) -> ActionResult:
        import redis.exceptions as rx

        conn = client(self.options, ctx.timeout)
        command = tuple(self.options.command)
        try:
            reply = await conn.execute_command(*command)
        except (rx.RedisError, OSError) as exc:
            return ActionResult(False, failure(exc, self.options.url).summary, command=command)
        finally:
            await conn.aclose()
        return ActionResult(True, f"{command[0]} replied {_short(reply)}", output=str(reply)[:4096], command=command)


def _short(reply: object) -> str:
    text = "OK" if reply is True else reply if isinstance(reply, str) else repr(reply)
    return text if len(text) <= 80 else text[:77] + "..."
