"""A small HTTP proxy on 127.0.0.1 that injects faults in front of a real OpenAI-compatible server.

Each request to the proxy takes the next fault from a queue (or the standing fault, or none) and
then either forwards the request to the upstream server or fails in one of these ways:

  "pass"        forward, answer with the upstream's response
  "delay:S"     forward, then wait S seconds before answering (past the client's timeout: a
                timeout; the upstream is idle again by the time the client retries)
  "429:S"       HTTP 429 with `Retry-After: S`, upstream not asked
  "500", "503"  that HTTP status with an error body, upstream not asked
  "drop"        close the connection without answering
  "truncate"    forward, then send the headers and only half of the body, and close

It counts requests, what it did with each, and the most requests it held at once, so tests can
check retries and the client's concurrency bound.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class QuietHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that does not print a client's hang-up to stderr (tests read stderr)."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass


class FaultProxy:
    def __init__(self, upstream: str):
        up = urlsplit(upstream)  # e.g. http://127.0.0.1:PORT/v1
        self.upstream_host, self.upstream_port = up.hostname or "127.0.0.1", up.port or 80
        self.prefix = up.path.rstrip("/")  # "/v1"
        self._lock = threading.Lock()
        self.queue: list[str] = []  # faults for the next requests, in order
        self.standing = "pass"  # the fault once the queue is empty
        self.log: list[tuple[str, str]] = []  # (path, fault) per request
        self.in_flight = 0
        self.max_in_flight = 0
        self._server = QuietHTTPServer(("127.0.0.1", 0), self._handler())
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"

    # --- control
    def inject(self, *faults: str, then: str | None = None) -> None:
        with self._lock:
            self.queue.extend(faults)
            if then is not None:
                self.standing = then

    def reset(self, standing: str = "pass") -> None:
        with self._lock:
            self.queue.clear()
            self.standing = standing
            self.log.clear()
            self.max_in_flight = 0

    def counts(self) -> Counter:
        with self._lock:
            return Counter(f for _, f in self.log)

    def _next_fault(self, path: str) -> str:
        with self._lock:
            fault = self.queue.pop(0) if self.queue else self.standing
            self.log.append((path, fault))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return fault

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    # --- the server
    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: a drop hits one request

            def do_GET(self) -> None:  # noqa: N802
                self._serve(b"")

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._serve(body)

            def _serve(self, body: bytes) -> None:
                fault = proxy._next_fault(self.path)
                self._counted = True
                try:
                    self._act(fault, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): nothing to answer
                finally:
                    self._answered()

            def _answered(self) -> None:
                # Out of flight just *before* the answer (or the hang-up) leaves: once the client
                # has it, it may send its next request before this thread runs again, and counting
                # both would report one more in flight than the client ever had.
                if self._counted:
                    self._counted = False
                    proxy._done()

            def _act(self, fault: str, body: bytes) -> None:
                kind, _, arg = fault.partition(":")
                if kind == "drop":
                    self.close_connection = True
                    self._answered()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if kind == "429":
                    self._reply(429, {"Retry-After": arg or "1"}, b'{"error": {"message": "slow down"}}')
                    return
                if kind.isdigit():
                    self._reply(int(kind), {}, b'{"error": {"message": "injected server error"}}')
                    return
                status, headers, data = self._forward(body)
                if kind == "delay":
                    time.sleep(float(arg))
                if kind == "truncate":
                    self._answered()
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._reply(status, headers, data)

            def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=120)
                try:
                    headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
                    if self.headers.get("Authorization"):
                        headers["Authorization"] = self.headers["Authorization"]
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    ctype = resp.getheader("Content-Type", "application/json")
                    return resp.status, {"Content-Type": ctype}, data
                finally:
                    conn.close()

            def _reply(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self._answered()
                self.send_response(status)
                headers = {"Content-Type": "application/json", **headers, "Content-Length": str(len(data))}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def start(self) -> FaultProxy:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()
