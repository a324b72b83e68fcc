"""A fast OpenAI-compatible upstream for benchmarks: fixed small responses, TCP_NODELAY
(aiohttp's default), optional fixed delay. `python -m bench.mock_upstream --port 9100`."""

import argparse
import asyncio

from aiohttp import web

CHAT = (b'{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the bench mock."},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":6,"total_tokens":15}}')
EMBEDDINGS = (b'{"object":"list","model":"text-embedding-3-small","data":[{"object":"embedding","index":0,'
              b'"embedding":[' + b",".join(b"0.0123" for _ in range(256)) + b']}],'
              b'"usage":{"prompt_tokens":3,"total_tokens":3}}')


def make_app(delay_s: float) -> web.Application:
    async def reply(body: bytes):
        if delay_s:
            await asyncio.sleep(delay_s)
        return web.Response(body=body, content_type="application/json")

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return await reply(CHAT)

    async def embeddings(request: web.Request) -> web.Response:
        await request.read()
        return await reply(EMBEDDINGS)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--delay-ms", type=float, default=0)
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    web.run_app(make_app(args.delay_ms / 1000), host="127.0.0.1", port=args.port, access_log=None,
                print=None)


if __name__ == "__main__":
    main()
