"""A small HTTP server for the registry tests (aiohttp on loopback, own thread): it serves
documents (OpenAPI specs in JSON or YAML) at paths the test chooses and, as a stand-in for an
internal Symbia service, `GET /api/things/{id}` that echoes what it received."""

from typing import Any

from aiohttp import web

from tests.fakes.loopback import ServerThread


class DocumentServer(ServerThread):
    name = "document-server"

    def __init__(self) -> None:
        super().__init__()
        self.documents: dict[str, tuple[bytes, str]] = {}
        self.requests: list[dict[str, Any]] = []

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

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/things/{id}", self._thing)
        app.router.add_get("/{tail:.*}", self._document)
        return app
