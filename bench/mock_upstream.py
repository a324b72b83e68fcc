"""A fast OpenAI-compatible upstream for benchmarks: fixed small responses, TCP_NODELAY
(aiohttp's default), optional fixed delay. `python -m bench.mock_upstream --port 9100`.

`"stream": true` chat requests get server-sent chunks: a role chunk, then `max_tokens`
(default 20) one-token content chunks, each its own write, optionally `--chunk-delay-ms`
apart, then the finish chunk, a usage chunk and `[DONE]`.

`GET /openapi.json` describes one plain JSON operation, `GET /ops/ping` (operationId `ping`),
served by this mock: the upstream of the OpenAPI invoke benchmark."""

import argparse
import asyncio
import json

from aiohttp import web

CHAT = (b'{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the bench mock."},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":6,"total_tokens":15}}')
EMBEDDINGS = (b'{"object":"list","model":"text-embedding-3-small","data":[{"object":"embedding","index":0,'
              b'"embedding":[' + b",".join(b"0.0123" for _ in range(256)) + b']}],'
              b'"usage":{"prompt_tokens":3,"total_tokens":3}}')


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


USAGE_CHUNK = (b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
               b'"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":%d,'
               b'"total_tokens":%d}}\n\n')
ROLE_CHUNK = _chunk({"role": "assistant", "content": ""})
FINISH_CHUNK = _chunk({}, "stop")
TOKEN_CHUNKS = [_chunk({"content": f"tok{i} "}) for i in range(4096)]


PING = b'{"ok":true,"service":"bench-mock","items":[1,2,3]}'


def openapi_spec(server_url: str) -> bytes:
    return json.dumps({
        "openapi": "3.1.0", "info": {"title": "bench mock", "version": "1"}, "servers": [{"url": server_url}],
        "paths": {"/ops/ping": {"get": {"operationId": "ping", "summary": "a fixed small JSON object",
                                        "responses": {"200": {"description": "ok", "content": {
                                            "application/json": {"schema": {"type": "object"}}}}}}}},
    }).encode()


def make_app(delay_s: float, chunk_delay_s: float = 0.0) -> web.Application:
    async def reply(body: bytes):
        if delay_s:
            await asyncio.sleep(delay_s)
        return web.Response(body=body, content_type="application/json")

    async def chat(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if b'"stream"' not in raw:
            return await reply(CHAT)
        body = json.loads(raw)
        if body.get("stream") is not True:
            return await reply(CHAT)
        tokens = min(int(body.get("max_tokens") or 20), len(TOKEN_CHUNKS))
        if delay_s:
            await asyncio.sleep(delay_s)
        response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await response.prepare(request)
        await response.write(ROLE_CHUNK)
        for i in range(tokens):
            if chunk_delay_s and i:
                await asyncio.sleep(chunk_delay_s)
            await response.write(TOKEN_CHUNKS[i])
        await response.write(FINISH_CHUNK)
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(USAGE_CHUNK % (tokens, 9 + tokens))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def embeddings(request: web.Request) -> web.Response:
        await request.read()
        return await reply(EMBEDDINGS)

    async def ping(_request: web.Request) -> web.Response:
        return await reply(PING)

    async def spec(request: web.Request) -> web.Response:
        return web.Response(body=openapi_spec(f"{request.scheme}://{request.host}"), content_type="application/json")

    app = web.Application()
    app.router.add_get("/ops/ping", ping)
    app.router.add_get("/openapi.json", spec)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--delay-ms", type=float, default=0)
    parser.add_argument("--chunk-delay-ms", type=float, default=0)
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    web.run_app(make_app(args.delay_ms / 1000, args.chunk_delay_ms / 1000), host="127.0.0.1", port=args.port,
                access_log=None, print=None)


if __name__ == "__main__":
    main()
