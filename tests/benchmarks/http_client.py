"""A lean HTTP/1.1 load client for the service benchmarks: keep-alive connections on asyncio streams,
each request's bytes encoded once, responses read by their Content-Length.

Why: httpx spent 1.4-2.2 ms of CPU per request on this 2-core machine, on the same cores as the
service and inside every latency it measured. This client only reads the status line and the body's
length (the bodies are still read to the end), so what the benchmarks measure is the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

TIMEOUT_SECONDS = 10.0
IDLE_SECONDS = 2.0
"""Idle connections older than this are closed, not reused: the server drops keep-alive connections
after 5 s idle (uvicorn's default), and a request written to one it just dropped would fail."""


@contextlib.contextmanager
def collector_paused():
    """No garbage collection in this process while it measures. A full collection of the client (it
    imports pandas) paused it for about 40 ms, and every request in flight counted that pause as the
    service's latency. What is loaded before is frozen out of later collections; the run's own garbage
    (a few MB for a minute's records) is collected after."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
        gc.collect()


class ResponseError(Exception):
    """The connection broke or the response could not be read (the request counts as failed)."""


def split_url(url: str) -> tuple[str, int, str]:
    """(host, port, path) of a URL."""
    parsed = urlsplit(url)
    return parsed.hostname, parsed.port, parsed.path


def encode_requests(host: str, port: int, path: str, bodies: Sequence[dict], token: str) -> list[bytes]:
    """Whole POST requests, ready to write."""
    encoded = []
    for body in bodies:
        payload = json.dumps(body).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
        encoded.append(head.encode() + payload)
    return encoded


class Connection:
    """One keep-alive connection; `send` writes a request and returns (status, body)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.last_used = 0.0

    def reusable(self) -> bool:
        """Still open on our side, not closed by the server, and not idle long enough to be dropped."""
        return (self.reader is not None and not self.reader.at_eof()
                and time.monotonic() - self.last_used < IDLE_SECONDS)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._send(request), TIMEOUT_SECONDS)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as failure:
            self.close()
            raise ResponseError(f"{type(failure).__name__}: {failure}") from None

    async def _send(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunked()
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        self.last_used = time.monotonic()
        return status, body

    async def _chunked(self) -> bytes:
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await self.reader.readexactly(size + 2)
            if size == 0:
                return b"".join(parts)
            parts.append(data[:-2])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class ConnectionPool:
    """Idle connections reused first; at most `limit` open at once (further requests wait for one)."""

    def __init__(self, host: str, port: int, limit: int):
        self.host, self.port = host, port
        self.idle: list[Connection] = []
        self.slots = asyncio.Semaphore(limit)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        async with self.slots:
            connection = self._idle_connection() or Connection(self.host, self.port)
            answer = await connection.send(request)  # a broken connection is closed and not reused
            self.idle.append(connection)
            return answer

    def _idle_connection(self) -> Connection | None:
        while self.idle:
            connection = self.idle.pop()
            if connection.reusable():
                return connection
            connection.close()
        return None

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


async def open_loop_records(url: str, bodies: Sequence[dict], token: str, rate: float, seconds: float,
                            during: Callable[[float], None] | None = None) -> list[dict]:
    """Requests dispatched on a fixed schedule (`rate` per second for `seconds`; not when the previous
    one ends, so a slow server shows), each recorded as {at, ms, late_ms, error}:
    - `ms`: from the moment the request is handed to the pool to its whole response. Waiting for a
      free connection counts (the pool holds at most 200), so the client's queue is in it;
    - `late_ms`: how long after its scheduled time the request was handed over. asyncio sleeps in
      whole milliseconds (epoll's timeout), so this client dispatches about 0.7 ms late at p50 on
      this machine; that is the client's timer, not the service, and is reported, not added;
    - `at`: the scheduled offset in seconds; `during(elapsed)` runs between dispatches (fault injection).
    """
    host, port, path = split_url(url)
    requests = encode_requests(host, port, path, bodies, token)
    pool = ConnectionPool(host, port, limit=200)
    records: list[dict] = []

    async def one(request: bytes, scheduled: float, offset: float) -> None:
        dispatched = time.perf_counter()
        try:
            status, _ = await pool.send(request)
            error = None if status == 200 else f"HTTP {status}"
        except ResponseError as failure:
            error = str(failure).partition(":")[0] or "ResponseError"
        records.append({"at": offset, "ms": (time.perf_counter() - dispatched) * 1000,
                        "late_ms": (dispatched - scheduled) * 1000, "error": error})

    tasks = []
    with collector_paused():
        begin = time.perf_counter()
        for index in range(int(rate * seconds)):
            scheduled = begin + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if during is not None:
                during(time.perf_counter() - begin)
            tasks.append(asyncio.create_task(one(requests[index % len(requests)], scheduled, scheduled - begin)))
        await asyncio.gather(*tasks)
    pool.close()
    return records
