"""A lean HTTP/1.1 keep-alive client for the load generator of bench/assignment.py.

Why not httpx (the client before): the load generator runs on the same 2 cores as the server it
measures, so every millisecond of CPU it spends per cycle is taken from the server. httpx's
asyncio client spent 2.5-3.2 ms of CPU per rating cycle (its own request/response models,
header normalisation, connection-pool state machine); this one writes a pre-formatted request on
a kept-alive connection and parses the answer with httptools (the C parser uvicorn itself uses),
on uvloop. It does what the benchmark needs and nothing more: POST/GET with a JSON body and
headers, one request at a time per connection, `Content-Length` bodies (the server sends no
chunked API answers). bench/README.md has its CPU per cycle beside httpx's.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import httptools


class HTTPError(Exception):
    """The request got no (complete) answer: connection refused, closed or garbled."""


class Response:
    __slots__ = ("status_code", "body", "keep_alive")

    def __init__(self, status_code: int, body: bytes, keep_alive: bool) -> None:
        self.status_code, self.body, self.keep_alive = status_code, body, keep_alive

    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class _Parse:
    """httptools callbacks for one response."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.done = False

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self, raw: bytes) -> Response | None:
        """The answer; None if the server had closed the connection before answering (an idle
        keep-alive connection it timed out)."""
        self.writer.write(raw)
        sink = _Parse()
        parser = httptools.HttpResponseParser(sink)
        got = False
        while not sink.done:
            data = await self.reader.read(65536)
            if not data:
                if not got:
                    return None
                raise HTTPError("connection closed mid-answer")
            got = True
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                raise HTTPError(f"bad answer: {exc}") from exc
        return Response(parser.get_status_code(), b"".join(sink.parts), parser.should_keep_alive())

    def close(self) -> None:
        self.writer.close()


class LeanClient:
    """At most `connections` requests in flight, each on its own kept-alive connection."""

    def __init__(self, base_url: str, connections: int, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout = timeout
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(connections)
        self._host_line = f"Host: {self.host}:{self.port}\r\n"

    async def __aenter__(self) -> LeanClient:
        return self

    async def __aexit__(self, *exc) -> None:
        while self._idle:
            self._idle.pop().close()

    async def _open(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise HTTPError(f"connect: {exc}") from exc
        return _Connection(reader, writer)

    async def post(self, url: str, *, json: dict | None = None, headers: dict | None = None) -> Response:
        return await self.request("POST", url, json=json, headers=headers)

    async def get(self, url: str, *, headers: dict | None = None) -> Response:
        return await self.request("GET", url, headers=headers)

    async def request(self, method: str, url: str, *, json=None, headers: dict | None = None) -> Response:
        body = b"" if json is None else _dumps(json)
        head = [f"{method} {url} HTTP/1.1\r\n", self._host_line, f"Content-Length: {len(body)}\r\n"]
        if json is not None:
            head.append("Content-Type: application/json\r\n")
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}\r\n")
        head.append("\r\n")
        raw = "".join(head).encode("latin-1") + body
        async with self._slots:
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._open()
            try:
                response = await asyncio.wait_for(conn.request(raw), self.timeout)
                if response is None and reused:  # the server had closed it while idle: once more
                    conn.close()
                    conn = await self._open()
                    response = await asyncio.wait_for(conn.request(raw), self.timeout)
                if response is None:
                    raise HTTPError("connection closed before an answer")
            except (TimeoutError, OSError, HTTPError) as exc:
                conn.close()
                raise exc if isinstance(exc, HTTPError) else HTTPError(repr(exc)) from exc
            if response.keep_alive:
                self._idle.append(conn)
            else:
                conn.close()
            return response


def _dumps(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
