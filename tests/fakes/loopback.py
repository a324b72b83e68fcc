"""A real aiohttp server on a loopback port, in its own thread and loop, for project fakes.

`ServerThread` runs any aiohttp application that way (subclasses build it in `build_app`).
`LoopbackServer` adds the usual fake behaviour: every request is recorded (method, path,
lower-case headers, JSON body); `delay_s` makes every answer wait (a hung dependency) and
`fail_status` makes every answer that status (a sick one).
"""

import asyncio
import threading
from typing import Any

from aiohttp import web

# The request's decoded JSON body (handlers read `request[JSON]`).
JSON = web.RequestKey("json", object)


class ServerThread:
    name = "fake"

    def __init__(self) -> None:
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def build_app(self) -> web.Application:
        raise NotImplementedError

    def start(self):
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=0.2)  # hung handlers too
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self.name} did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)


class LoopbackServer(ServerThread):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        self.delay_s = 0.0
        self.fail_status: int | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        self.routes(app)
        return app

    def count(self, path_prefix: str = "") -> int:
        return sum(1 for r in self.requests if r["path"].startswith(path_prefix))

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        body = None
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = await request.text()
        self.requests.append({"method": request.method, "path": request.path, "body": body,
                              "headers": {k.lower(): v for k, v in request.headers.items()}})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_status:
            return web.json_response({"error": "simulated failure"}, status=self.fail_status)
        request[JSON] = body
        return await handler(request)
