"""A small HTTP server for the registry tests (aiohttp on loopback, own thread): it serves
documents (OpenAPI specs in JSON or YAML) at paths the test chooses and, as a stand-in for an
internal Symbia service, `GET /api/things/{id}` that echoes what it received."""

import asyncio
import threading
from typing import Any

from aiohttp import web


class DocumentServer:
    def __init__(self) -> None:
        self.documents: dict[str, tuple[bytes, str]] = {}
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def serve(self, path: str, body: bytes | str, content_type: str) -> str:
        self.documents[path] = (body.encode() if isinstance(body, str) else body, content_type)
        return self.url + path

    async def _document(self, request: web.Request) -> web.Response:
        found = self.documents.get(request.path)
        if found is None:
            return web.Response(status=404, text="no such document")
        return web.Response(body=found[0], content_type=found[1])

    async def _thing(self, request: web.Request) -> web.Response:
        seen = {"id": request.match_info["id"], "query": dict(request.query), "headers": dict(request.headers)}
        self.requests.append(seen)
        return web.json_response(seen)

    def start(self) -> "DocumentServer":
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_get("/api/things/{id}", self._thing)
            app.router.add_get("/{tail:.*}", self._document)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="document-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("document server did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)
