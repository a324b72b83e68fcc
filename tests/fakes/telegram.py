"""A fake of the Telegram Bot API (`/bot<token>/<method>`, the token in the path), for the
Catalog integration tests: a known token gets `{"ok": true, "result": {"method", "params"}}`,
any other the Bot API's 401 answer."""

from aiohttp import web

from tests.fakes.loopback import JSON, LoopbackServer


class FakeTelegram(LoopbackServer):
    name = "fake-telegram"

    def __init__(self, tokens: set[str]) -> None:
        super().__init__()
        self.tokens = tokens

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self.method)

    async def method(self, request: web.Request) -> web.Response:
        if request.match_info["token"] not in self.tokens:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        params = request[JSON] if request[JSON] is not None else dict(request.query)
        return web.json_response({"ok": True, "result": {"method": request.match_info["method"], "params": params}})
