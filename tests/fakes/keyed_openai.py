"""An OpenAI-compatible upstream that shows which provider key reached it: the chat answer
names the key's label (`KEYS`), unknown keys get OpenAI's 401, and `GET /v1/models` answers a
model list that depends on the key (so tests can tell whose list they were served)."""

from aiohttp import web

from tests.fakes.loopback import JSON, LoopbackServer


class KeyedOpenAI(LoopbackServer):
    name = "fake-keyed-openai"

    def __init__(self, keys: dict[str, str]) -> None:
        super().__init__()
        self.keys = keys          # api key → label

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)

    def _label(self, request: web.Request) -> str | None:
        return self.keys.get(request.headers.get("Authorization", "").removeprefix("Bearer "))

    @staticmethod
    def _rejected() -> web.Response:
        return web.json_response({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                            "code": "invalid_api_key"}}, status=401)

    async def chat(self, request: web.Request) -> web.Response:
        label = self._label(request)
        if label is None:
            return self._rejected()
        body = request[JSON]
        return web.json_response({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answered with {label}"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        })

    async def models(self, request: web.Request) -> web.Response:
        label = self._label(request)
        if label is None:
            return self._rejected()
        return web.json_response({"object": "list", "data": [
            {"id": f"gpt-4o-{label}", "object": "model", "created": 2, "owned_by": "system"},
            {"id": "gpt-4o-mini", "object": "model", "created": 1, "owned_by": "system"},
            {"id": "ft:gpt-4o-mini:acme", "object": "model", "created": 3, "owned_by": "user"},
            {"id": "whisper-1", "object": "model", "created": 1, "owned_by": "system"},
            {"id": "text-embedding-3-small", "object": "model", "created": 0, "owned_by": "system"},
        ]})
