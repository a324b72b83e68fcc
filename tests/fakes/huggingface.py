"""A small HuggingFace upstream for tests: the router's OpenAI-compatible chat, TGI's
`/generate`, TEI's `/embed`, hf-inference feature extraction and `/v1/embeddings`; streamed chat
(OpenAI-compatible SSE with usage when `stream_options.include_usage`) and TGI's `/generate_stream`.

It is a real HTTP server on loopback (aiohttp, own thread and loop). Behaviour is chosen by
the model name, so one server serves every test:
  `fail-<status>`  answer that HTTP status with an HF-style error body
  `loading`        503 with `estimated_time` (a cold model on the router)
  `slow-<ms>`      wait before answering
  `tokens`         feature extraction answers token-level features (not sentence vectors)
Every request is recorded (method, path, headers, JSON body) for assertions.
"""

import asyncio
import json
from typing import Any

from aiohttp import web

from tests.fakes.loopback import ServerThread

API_KEY = "hf_test"
DIM = 8


def _vector(text: str) -> list[float]:
    seed = sum(ord(c) for c in text) or 1
    return [round(((seed * (i + 7)) % 97) / 97.0, 6) for i in range(DIM)]


class FakeHuggingFace(ServerThread):
    name = "fake-huggingface"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []

    # --- behaviour -----------------------------------------------------------------------

    async def _record(self, request: web.Request) -> dict[str, Any]:
        body = await request.json() if request.can_read_body else None
        self.requests.append({"method": request.method, "path": request.path, "headers": dict(request.headers),
                              "body": body})
        return body or {}

    async def _gate(self, request: web.Request, model: str) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return web.json_response({"error": "Invalid credentials in Authorization header"}, status=401)
        if model.startswith("fail-"):
            status = int(model.removeprefix("fail-"))
            body: dict[str, Any] = {"error": f"simulated failure {status}"}
            if status == 422:
                body["error_type"] = "validation"
            return web.json_response(body, status=status)
        if model == "loading":
            return web.json_response({"error": f"Model {model} is currently loading", "estimated_time": 12.4},
                                     status=503)
        if model.startswith("slow-"):
            await asyncio.sleep(int(model.removeprefix("slow-")) / 1000)
        return None

    async def chat(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        model = body.get("model", "")
        if (failure := await self._gate(request, model)) is not None:
            return failure
        last = body["messages"][-1]["content"]
        text = last if isinstance(last, str) else " ".join(p.get("text", "") for p in last if isinstance(p, dict))
        if body.get("stream"):
            return await self._chat_stream(request, body, f"hf says: {text}")
        return web.json_response({
            "id": "chatcmpl-hf", "object": "chat.completion", "created": 1700000000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"hf says: {text}"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11},
        })

    async def generate(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        if (failure := await self._gate(request, "")) is not None:
            return failure
        return web.json_response({
            "generated_text": f" continued: {body['inputs'][-20:]}",
            "details": {"finish_reason": "length", "generated_tokens": 5, "seed": 42, "prefill": []},
        })

    @staticmethod
    async def _sse(request: web.Request, events: list[Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            data = event if isinstance(event, str) else json.dumps(event)
            await response.write(f"data: {data}\n\n".encode())
        await response.write_eof()
        return response

    async def _chat_stream(self, request: web.Request, body: dict[str, Any], text: str) -> web.StreamResponse:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": "chatcmpl-hf", "object": "chat.completion.chunk", "created": 1700000000,
                    "model": body["model"], "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        words = text.split(" ")
        events: list[Any] = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
        events.append(chunk({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({"id": "chatcmpl-hf", "object": "chat.completion.chunk", "created": 1700000000,
                           "model": body["model"], "choices": [],
                           "usage": {"prompt_tokens": 7, "completion_tokens": len(words),
                                     "total_tokens": 7 + len(words)}})
        return await self._sse(request, [*events, "[DONE]"])

    async def generate_stream(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        if (failure := await self._gate(request, "")) is not None:
            return failure
        tokens = [" continued", ":", " once", " upon"]
        events: list[Any] = [{"index": i + 1, "token": {"id": i, "text": t, "logprob": -0.1, "special": False},
                              "generated_text": None, "details": None} for i, t in enumerate(tokens)]
        events.append({"index": 5, "token": {"id": 2, "text": "</s>", "logprob": 0.0, "special": True},
                       "generated_text": "".join(tokens),
                       "details": {"finish_reason": "eos_token", "generated_tokens": 5, "seed": 7}})
        return await self._sse(request, events)

    async def embed(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        model = request.match_info.get("model", "")
        if (failure := await self._gate(request, model)) is not None:
            return failure
        inputs = body["inputs"] if isinstance(body["inputs"], list) else [body["inputs"]]
        if model == "tokens":
            return web.json_response([[_vector(t), _vector(t + "!")] for t in inputs])
        return web.json_response([_vector(t) for t in inputs])

    async def openai_embeddings(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        if (failure := await self._gate(request, body.get("model", ""))) is not None:
            return failure
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": _vector(t)} for i, t in enumerate(inputs)]
        return web.json_response({"object": "list", "data": list(reversed(data)), "model": body["model"],
                                  "usage": {"prompt_tokens": 3, "total_tokens": 3}})

    # --- lifecycle -----------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/generate", self.generate)
        app.router.add_post("/generate_stream", self.generate_stream)
        app.router.add_post("/embed", self.embed)
        app.router.add_post("/hf-inference/models/{model:.+}/pipeline/feature-extraction", self.embed)
        app.router.add_post("/v1/embeddings", self.openai_embeddings)
        return app
