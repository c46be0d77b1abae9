"""The servers of tests/netns.py, run inside its server namespace: a minimal HTTP/1.1 responder on every
address at port 8080, on IPv4 only at port 8081 (IPv6 there is refused), and TLS at port 8443 with one
certificate for IPv4 and another for IPv6 (as two front ends of one name might). Prints ``ready``.

Usage: netns_server.py '{"v4": ADDRESS, "v6": ADDRESS, "hole": ADDRESS, "cert4": PEM, "key4": PEM,
"cert6": PEM, "key6": PEM}'
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys

REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if head:
            writer.write(REPLY)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, TimeoutError, ssl.SSLError):
        pass
    finally:
        writer.close()


def context(cert: str, key: str) -> ssl.SSLContext:
    made = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    made.load_cert_chain(cert, key)
    return made


async def main(setup: dict[str, str]) -> None:
    v4, v6s = setup["v4"], (setup["v6"], setup["hole"])
    servers = [await asyncio.start_server(answer, host, 8080) for host in (v4, *v6s)]
    servers.append(await asyncio.start_server(answer, v4, 8081))
    servers.append(await asyncio.start_server(answer, v4, 8443, ssl=context(setup["cert4"], setup["key4"])))
    for host in v6s:
        servers.append(await asyncio.start_server(answer, host, 8443, ssl=context(setup["cert6"], setup["key6"])))
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
