"""The read-only guard: GET and HEAD pass, every other method gets 405 on every path.

One exception: ``POST /lookup/batch``, a read-only *query* whose exposure list does not fit in
a URL (10,000 ids). It writes nothing; POST is only the way to send a body.

Done in the ASGI layer rather than per route because Starlette answers an unrouted method on an
unknown path with 404, and the contract is that *any* write attempt is refused as a method
error (405 with ``Allow: GET, HEAD``), whatever the path. HEAD is served by running the GET
route and dropping the body, so HEAD's headers (ETag, Content-Length, Cache-Control) are
exactly GET's without registering every route twice in the OpenAPI document.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from calibreg.http.encoding import JSON_TYPE, NO_CACHE, render_json

ALLOWED_METHODS = ("GET", "HEAD")
#: Read-only queries that take a body: path → the methods allowed there.
QUERY_PATHS = {"/lookup/batch": ("GET", "HEAD", "POST")}


class ReadOnlyMiddleware:
    """Refuse anything but GET/HEAD with a JSON 405 and serve HEAD as a body-less GET."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass GET through, answer HEAD without a body, refuse every other method."""
        if scope["type"] != "http" or scope["method"] == "GET":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        allowed = QUERY_PATHS.get(scope.get("path", ""), ALLOWED_METHODS)
        if method == "POST" and "POST" in allowed:
            await self.app(scope, receive, send)
            return
        if method == "HEAD":
            # A new scope dict: the server keeps its own, so it still knows this is a HEAD.
            get_scope = {**scope, "method": "GET"}

            async def send_headers_only(message: Message) -> None:
                if message["type"] == "http.response.body":
                    message = {**message, "body": b""}
                await send(message)

            await self.app(get_scope, receive, send_headers_only)
            return
        body = render_json(
            {
                "error": {
                    "code": 405,
                    "message": f"{method} is not allowed: this API is read-only "
                    f"({', '.join(allowed)})",
                }
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 405,
                "headers": [
                    (b"content-type", JSON_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"allow", ", ".join(allowed).encode()),
                    (b"cache-control", NO_CACHE.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
