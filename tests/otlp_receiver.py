"""A real OTLP/HTTP metrics receiver for tests: an http.server on loopback that decodes each request's protobuf
with opentelemetry-proto, as a collector would, and keeps what it received."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)


def attributes(kvs: Any) -> dict[str, Any]:
    """OTLP KeyValue list -> plain dict (strings, ints, doubles, bools)."""
    out = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


@dataclass
class Point:
    """One data point of one metric, flattened with its metric and resource."""

    name: str
    unit: str
    kind: str  # gauge, sum, histogram
    attributes: dict[str, Any]
    resource: dict[str, Any]
    value: float | None = None
    count: int | None = None
    bounds: tuple[float, ...] = ()
    monotonic: bool | None = None


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    requests: list[ExportMetricsServiceRequest] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    status: int = 200  # what to answer; 503 simulates a collector that is down

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def points(self) -> list[Point]:
        return list(_flatten(self.requests))

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def latest(self, name: str, **attrs: Any) -> Point:
        """The last point of metric ``name`` whose attributes include ``attrs``."""
        found = [p for p in self.points() if p.name == name and all(p.attributes.get(k) == v
                                                                     for k, v in attrs.items())]
        assert found, f"no {name} point with {attrs}; got names {sorted({p.name for p in self.points()})}"
        return found[-1]

    def names(self) -> set[str]:
        return {p.name for p in self.points()}

    def wait(self, count: int = 1, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.requests) >= count, f"received {len(self.requests)} export requests, expected {count}"


def _flatten(requests: list[ExportMetricsServiceRequest]) -> Iterator[Point]:
    for request in requests:
        for rm in request.resource_metrics:
            resource = attributes(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    data = getattr(metric, kind)
                    for dp in data.data_points:
                        point = Point(metric.name, metric.unit, kind, attributes(dp.attributes), resource)
                        if kind == "histogram":
                            point.count, point.bounds = dp.count, tuple(dp.explicit_bounds)
                            point.value = dp.sum
                        else:
                            point.value = dp.as_double if dp.WhichOneof("value") == "as_double" else dp.as_int
                        if kind == "sum":
                            point.monotonic = data.is_monotonic
                        yield point


def start() -> Receiver:
    """A receiver serving on a loopback port; ``with start() as receiver:`` stops it at the end."""
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            receiver.paths.append(self.path)
            receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
            if receiver.status == 200:
                request = ExportMetricsServiceRequest()
                request.ParseFromString(body)
                receiver.requests.append(request)
            payload = ExportMetricsServiceResponse().SerializeToString()
            self.send_response(receiver.status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(server)
    threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True).start()
    return receiver
