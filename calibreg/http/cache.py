"""Lookup answers cached per process, invalidated by the registry's certification generation.

Every certify, decertify and exposure write bumps one counter in the database (migration
0007, :meth:`calibreg.client.Registry.certification_generation`); while it stays put, every
lookup answer does. So each lookup request costs one primary-key read of that counter, and:

* a client (or a caching proxy) holding the current ETag gets **304** without any lookup;
* an answer this worker already gave at this generation is sent from memory;
* otherwise the route answers, and a 200 is kept under the generation read *before* it ran
  (a certification that commits in between makes the next request see a new generation, so
  nothing stale outlives it).

The ETag is derived from the generation and the request (:func:`lookup_etag`), never from the
body, so every worker of a deployment gives the same ETag for the same answer, and a 304 needs
no body. Answers carry ``Cache-Control: public, max-age=N`` (short: a proxy may serve an answer
that long, then revalidates). Errors are never cached.

This is an ASGI middleware in front of the routes, so a cache hit skips routing, parameter
validation and the JSON encoding altogether.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from calibreg.http.encoding import (
    JSON_TYPE,
    etag_matches,
    lookup_cache_control,
    lookup_etag,
    render_json,
)

#: Response headers as the cache keeps them (immutable, so the collector leaves them alone).
Headers = tuple[tuple[bytes, bytes], ...]
#: Paths whose GET (and POST, for the batch) answers are cached and ETagged.
CACHED_PATHS = frozenset({"/lookup", "/lookup/batch"})
#: Largest request body a cached POST may carry (10^5 ids as JSON are ~1.5 MB).
MAX_BODY = 8 * 1024 * 1024


class LookupCache:
    """A bounded LRU of response bodies, all of one generation (a new generation empties it).

    Entries are bytes and tuples of bytes only, which the garbage collector stops tracking:
    a full collection then does not walk 10^5 cached answers (with lists of headers it took
    over 100 ms here, a pause every request of the moment waited for).
    """

    def __init__(self, max_entries: int = 100_000, max_bytes: int = 128 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._generation: int | None = None
        self._entries: OrderedDict[bytes, tuple[bytes, Headers]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, generation: int, key: bytes) -> tuple[bytes, Headers] | None:
        """Return ``(body, headers)`` cached for ``key`` at ``generation``, if any."""
        with self._lock:
            if generation != self._generation:
                self._reset(generation)
                self.misses += 1
                return None
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found

    def put(
        self,
        generation: int,
        key: bytes,
        body: bytes,
        headers: Iterable[tuple[bytes, bytes]],
    ) -> None:
        """Keep ``body`` for ``key`` at ``generation`` (ignored if the generation moved on)."""
        if len(body) > self.max_bytes // 4:
            return
        kept = tuple((bytes(name), bytes(value)) for name, value in headers)
        with self._lock:
            if self._generation is None or generation > self._generation:
                self._reset(generation)
            elif generation != self._generation:
                return
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old[0])
            self._entries[key] = (bytes(body), kept)
            self._bytes += len(body)
            while self._entries and (
                len(self._entries) > self.max_entries or self._bytes > self.max_bytes
            ):
                _, (dropped, _h) = self._entries.popitem(last=False)
                self._bytes -= len(dropped)

    def _reset(self, generation: int) -> None:
        self._generation = generation
        self._entries.clear()
        self._bytes = 0


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class LookupCacheMiddleware:
    """Answer lookups from the generation: 304, a cached body, or the route (then cache it)."""

    def __init__(
        self,
        app: ASGIApp,
        generation: Callable[[], int],
        *,
        max_age: int,
        cache: LookupCache | None = None,
    ) -> None:
        self.app = app
        self.generation = generation
        self.cache = cache if cache is not None else LookupCache()
        self.cache_control = lookup_cache_control(max_age).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve cached lookup paths from the generation; pass everything else through."""
        if (
            scope["type"] != "http"
            or scope["path"] not in CACHED_PATHS
            or scope["method"] not in ("GET", "POST")
        ):
            await self.app(scope, receive, send)
            return
        body = b""
        if scope["method"] == "POST":
            chunks = []
            size = 0
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_BODY:
                    await _send_json(
                        send,
                        413,
                        {
                            "error": {
                                "code": 413,
                                "message": f"request body over {MAX_BODY // 2**20} MiB: "
                                "split the exposure list",
                            }
                        },
                    )
                    return
                chunks.append(chunk)
                more = message.get("more_body", False)
            body = b"".join(chunks)
            receive = _replay(body, receive)
        key = b"\0".join(
            (
                scope["method"].encode(),
                scope["path"].encode(),
                scope.get("query_string", b""),
                (_header(scope, b"accept") or "").encode(),
                hashlib.blake2b(body, digest_size=16).digest() if body else b"",
            )
        )
        try:
            generation = self.generation()
        except Exception:  # the route reports the database's state in its own words
            await self.app(scope, receive, send)
            return
        etag = lookup_etag(generation, key)
        if scope["method"] == "GET" and etag_matches(_header(scope, b"if-none-match"), etag):
            await send(
                {
                    "type": "http.response.start",
                    "status": 304,
                    "headers": [(b"etag", etag.encode()), (b"cache-control", self.cache_control)],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        cached = self.cache.get(generation, key)
        if cached is not None:
            content, headers = cached
            # A fresh list each time: middleware downstream (gzip) edits the headers in place.
            await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
            await send({"type": "http.response.body", "body": content})
            return
        await self._through(scope, receive, send, generation, key, etag)

    async def _through(
        self, scope: Scope, receive: Receive, send: Send, generation: int, key: bytes, etag: str
    ) -> None:
        """Run the route; add the ETag and freshness to a 200 and keep it."""
        start: dict[str, Any] = {}
        parts: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                if message["status"] != 200:
                    await send(message)
                return
            if message["type"] != "http.response.body" or not start:
                await send(message)
                return
            if start["status"] != 200:
                await send(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            content = b"".join(parts)
            headers = [
                (k, v)
                for k, v in start.get("headers", [])
                if k.lower() not in (b"cache-control", b"etag")
            ]
            headers += [(b"etag", etag.encode()), (b"cache-control", self.cache_control)]
            self.cache.put(generation, key, content, headers)
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": content})

        await self.app(scope, receive, capture)


def _replay(body: bytes, original: Receive) -> Receive:
    """Return a ``receive`` that hands the app the body already read, then the server's own."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive


async def _send_json(send: Send, status: int, value: Any) -> None:
    body = render_json(value)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-cache"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = ["CACHED_PATHS", "LookupCache", "LookupCacheMiddleware"]
