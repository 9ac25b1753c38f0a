"""A fault-injecting HTTP proxy for S3 tests: stdlib only, one thread per connection.

It sits between an S3 client (s3fs / botocore, pointed at `proxy.endpoint`) and an S3 server
(the session's moto server) and forwards every request, unless a rule matches first. A rule
names a method, a regex over the request target (path and query, e.g. `list-type=2` for
ListObjectsV2) and how many matching requests it takes; it then answers them with:

- `slowdown`: 503 with S3's `<Code>SlowDown</Code>` error body (throttling);
- `reset`: no answer, the connection closed with a TCP reset;
- `delay`: forwarded after `delay_s` seconds (a slow or stuck server, for read timeouts);
- `denied`: 403 `<Code>AccessDenied</Code>` (a bucket policy that refuses the caller).

Every request is logged with the rule's action or `forwarded`, so a test can prove that the
faults it planned were met (and retried) rather than silently skipped.
"""

from __future__ import annotations

import http.client
import re
import socket
import struct
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

ACTIONS = ("slowdown", "reset", "delay", "denied")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
ERRORS = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "denied": (403, "AccessDenied", "Access Denied"),
}


@dataclass
class Rule:
    """Answer the next `times` requests that match `method` and `target` with `action`."""

    action: str
    method: str | None = None  # None: any method
    target: str = ""  # regex searched in the request target ("/bucket/key?query")
    times: int = 1  # how many matching requests this rule takes; -1: all of them
    delay_s: float = 0.0
    hits: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; expected one of {ACTIONS}")

    def take(self, method: str, target: str) -> bool:
        if self.times != -1 and self.hits >= self.times:
            return False
        if self.method is not None and method != self.method:
            return False
        if not re.search(self.target, target):
            return False
        self.hits += 1
        return True


@dataclass(frozen=True)
class Seen:
    method: str
    target: str
    action: str  # an action of ACTIONS, or "forwarded"
    status: int | None  # the status sent back (None after a reset)
    at: float = field(default_factory=time.monotonic)  # when the answer was decided


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that gave up (a read timeout, a reset) is part of the test: no traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


@dataclass
class FaultProxy:
    """The proxy server; use as a context manager, or start() and stop()."""

    upstream: str
    rules: list[Rule] = field(default_factory=list)
    log: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        up = urlsplit(self.upstream)
        self._upstream = (up.hostname, up.port or 80)
        self._server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "proxy not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, action: str, method: str | None = None, target: str = "", **kw) -> Rule:
        rule = Rule(action, method, target, **kw)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.log.clear()

    def seen(self, action: str | None = None, method: str | None = None, target: str = ""):
        """Logged requests, filtered like a rule (action None: any)."""
        with self._lock:
            log = list(self.log)
        return [
            s
            for s in log
            if (action is None or s.action == action)
            and (method is None or s.method == method)
            and re.search(target, s.target)
        ]

    def _decide(self, method: str, target: str) -> Rule | None:
        with self._lock:
            return next((r for r in self.rules if r.take(method, target)), None)

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.log.append(seen)

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect

            def log_message(self, format, *args):  # noqa: A002 - stdlib signature
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()  # the CRLF after each chunk
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                body = self._body()
                target = unquote(self.path)  # rules and the log see "run_date=", not "%3D"
                rule = proxy._decide(self.command, target)
                action = rule.action if rule else "forwarded"
                if action == "reset":
                    # SO_LINGER 0: closing sends RST at once, no answer at all
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    proxy._record(Seen(self.command, target, action, None))
                    return
                if action in ERRORS:
                    status, code, message = ERRORS[action]
                    xml = (
                        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
                        f"{code}</Code><Message>{message}</Message><RequestId>"
                        f"{uuid.uuid4().hex[:16]}</RequestId></Error>"
                    ).encode()
                    # logged before the answer: a client that has its answer finds it logged
                    proxy._record(Seen(self.command, target, action, status))
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(xml)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(xml)
                    return
                if action == "delay":
                    time.sleep(rule.delay_s)
                self._forward(
                    body, lambda status: proxy._record(Seen(self.command, target, action, status))
                )

            def _forward(self, body: bytes, record) -> int:
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in HOP_BY_HOP and k.lower() != "expect"  # answered here
                }
                if body or "Content-Length" in self.headers or self.command in ("PUT", "POST"):
                    headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(*proxy._upstream, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    record(resp.status)  # before the answer (see above)
                    self.send_response(resp.status, resp.reason)
                    for k, v in resp.getheaders():
                        if k.lower() in HOP_BY_HOP:
                            continue
                        if k.lower() == "content-length" and self.command != "HEAD":
                            continue  # set from the body below
                        self.send_header(k, v)
                    if self.command != "HEAD":
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                    return resp.status
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
