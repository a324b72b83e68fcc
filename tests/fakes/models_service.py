"""A stand-in for the Symbia Models service (the `symbia-labs` provider): the OpenAI-compatible
routes the gateway calls (chat also streamed), with the request rules of the real service's chat handler (roles
system/user/assistant, string contents only) and its `/v1/models` shape (OpenAI entries
extended with capabilities, context_length and a `symbia` block; remote models it only brokers
are listed with `symbia.source: remote`).

Every `/v1` route demands `X-Service-Auth: internal`, which is what the gateway must send.
A real HTTP server on loopback (aiohttp, own thread and loop); requests are recorded (header names in lower case).
"""

import json
from typing import Any

from aiohttp import web

from tests.fakes.loopback import ServerThread

MODELS = [
    {"id": "smollm2-135m", "object": "model", "owned_by": "symbia-labs", "capabilities": ["chat", "completion"],
     "context_length": 2048, "status": "loaded",
     "symbia": {"source": "local", "provider": "symbia-labs", "brokered": True, "availability": "available"}},
    {"id": "bge-small", "object": "model", "owned_by": "symbia-labs", "capabilities": ["embedding", "rerank"],
     "context_length": 512, "status": "available",
     "symbia": {"source": "local", "provider": "symbia-labs", "brokered": True, "availability": "unavailable"}},
    {"id": "anthropic/claude-sonnet-5", "object": "model", "owned_by": "anthropic",
     "symbia": {"source": "remote", "provider": "anthropic", "brokered": True, "availability": "unknown"}},
]


BODY = web.RequestKey("body", dict)


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=400)


class FakeModelsService(ServerThread):
    name = "fake-models-service"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []

    @web.middleware
    async def _service_auth(self, request: web.Request, handler) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        self.requests.append({"method": request.method, "path": request.path, "body": body,
                              "headers": {k.lower(): v for k, v in request.headers.items()}})
        request[BODY] = body or {}
        if request.path.startswith("/v1/") and request.headers.get("X-Service-Auth") != "internal":
            return web.json_response({"error": {"message": "service auth required", "type": "auth_error"}},
                                     status=401)
        return await handler(request)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": MODELS})

    async def chat(self, request: web.Request) -> web.Response:
        body = request[BODY]
        messages = body.get("messages")
        if not isinstance(body.get("model"), str) or not isinstance(messages, list):
            return _bad_request("Invalid request body")
        for m in messages:
            if m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
                return _bad_request("Invalid request body: messages take roles system/user/assistant and "
                                    "string content")
        if body["model"] == "missing-model":
            return web.json_response({"error": {"message": "Model 'missing-model' not found",
                                                "type": "invalid_request_error", "code": "model_not_found"}},
                                     status=404)
        if body.get("stream"):
            return await self._chat_stream(request, body["model"], f"local says: {messages[-1]['content']}")
        return web.json_response({
            "id": "chatcmpl-local", "object": "chat.completion", "created": 1700000000, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"local says: {messages[-1]['content']}"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        })

    @staticmethod
    async def _chat_stream(request: web.Request, model: str, text: str) -> web.StreamResponse:
        """OpenAI chunks, one per word, then `[DONE]`; no usage (the gateway does not ask for it)."""
        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            return json.dumps({"id": "chatcmpl-local", "object": "chat.completion.chunk", "created": 1700000000,
                               "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        words = text.split(" ")
        events = [chunk({"role": "assistant"})]
        events += [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
        events += [chunk({}, "stop"), "[DONE]"]
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(f"data: {event}\n\n".encode())
        await response.write_eof()
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        body = request[BODY]
        inputs = body["input"] if isinstance(body.get("input"), list) else [body.get("input")]
        data = [{"object": "embedding", "index": i, "embedding": [float(len(str(t))), 0.5, float(i)]}
                for i, t in enumerate(inputs)]
        return web.json_response({"object": "list", "data": data, "model": body.get("model"),
                                  "usage": {"prompt_tokens": 2 * len(inputs), "total_tokens": 2 * len(inputs)}})

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._service_auth])
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)
        return app
