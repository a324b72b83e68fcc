"""A fake of the Catalog service's `GET /api/bootstrap`: a list of resources, the stock
integrations bootstrap by default (reference §1.1, §5.1, §6.2): provider configs and the
Telegram OpenAPI integration. The fake also serves the integration specs itself
(`GET /specs/<name>`, from `specs`), so a `specUrl` points at loopback: `{catalog}` in a
resource stands for the fake's own URL. Loopback must be in INTEGRATIONS_OUTBOUND_ALLOW for the
gateway to fetch them, as Catalog's spec URLs are user-grade."""

import copy
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.loopback import LoopbackServer

STOCK_RESOURCES: list[dict[str, Any]] = [
    {"id": "int-openai-config", "key": "integrations/ai/openai/config", "name": "OpenAI Provider Configuration",
     "type": "integration", "status": "published",
     "metadata": {"provider": "openai", "baseUrl": "https://api.openai.com/v1", "authType": "bearer",
                  "endpoints": {"chat.completions": "/chat/completions", "embeddings": "/embeddings",
                                "completions": "/completions"},
                  "rateLimits": {"requestsPerMinute": 60, "tokensPerMinute": 40000},
                  "defaultModel": "gpt-4o-mini", "supportedOperations": ["chat.completions", "embeddings"]}},
    {"id": "int-openai-gpt4o", "key": "integrations/ai/openai/models/gpt-4o", "name": "GPT-4o",
     "type": "integration", "metadata": {"provider": "openai", "modelId": "gpt-4o"}},
    {"id": "int-anthropic-config", "key": "integrations/ai/anthropic/config",
     "name": "Anthropic Provider Configuration", "type": "integration",
     "metadata": {"provider": "anthropic", "baseUrl": "https://api.anthropic.com/v1", "authType": "header",
                  "authHeader": "x-api-key", "endpoints": {"messages": "/messages"},
                  "rateLimits": {"requestsPerMinute": 60, "tokensPerMinute": 40000},
                  "defaultModel": "claude-sonnet-4-20250514", "supportedOperations": ["messages"]}},
    {"id": "int-huggingface-config", "key": "integrations/ai/huggingface/config",
     "name": "HuggingFace Provider Configuration", "type": "integration",
     "metadata": {"provider": "huggingface", "baseUrl": "https://router.huggingface.co", "authType": "bearer",
                  "endpoints": {"chat.completions": "/v1/chat/completions"},
                  "rateLimits": {"requestsPerMinute": 30, "tokensPerMinute": 20000},
                  "defaultModel": "meta-llama/Llama-3.3-70B-Instruct",
                  "supportedOperations": ["text.generation", "chat.completions", "embeddings"],
                  "note": "Uses OpenAI-compatible API format"}},
    {"id": "int-telegram", "key": "integrations/channels/telegram", "name": "Telegram Bot API",
     "description": "Telegram Bot API for messaging channels", "type": "integration", "status": "published",
     "metadata": {"integrationType": "openapi", "channelType": "telegram", "specUrl": "{catalog}/specs/telegram.json",
                  "serverUrl": "https://api.telegram.org/bot{token}", "authType": "path"}},
]


def telegram_spec(*extra_operations: str) -> dict[str, Any]:
    """A small Bot API document: getMe, sendMessage, and `extra_operations` (POST /<name>)."""
    ok = {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}}
    paths: dict[str, Any] = {
        "/getMe": {"get": {"operationId": "getMe", "summary": "Returns basic information about the bot",
                           "responses": ok}},
        "/sendMessage": {"post": {"operationId": "sendMessage", "summary": "Sends a text message", "requestBody": {
            "required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["chat_id", "text"],
                "properties": {"chat_id": {"type": "integer"}, "text": {"type": "string"}}}}}}, "responses": ok}},
    }
    for name in extra_operations:
        paths[f"/{name}"] = {"post": {"operationId": name, "responses": ok}}
    return {"openapi": "3.0.3", "info": {"title": "Telegram Bot API", "version": "7.0"},
            "servers": [{"url": "https://api.telegram.org/bot{token}", "variables": {"token": {"default": "x"}}}],
            "paths": paths}


class FakeCatalog(LoopbackServer):
    name = "fake-catalog"

    def __init__(self) -> None:
        super().__init__()
        self.resources = copy.deepcopy(STOCK_RESOURCES)
        self.specs: dict[str, Any] = {"telegram.json": telegram_spec()}

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/bootstrap", self.bootstrap)
        app.router.add_get("/specs/{name}", self.spec)

    async def bootstrap(self, request: web.Request) -> web.Response:
        body = orjson.dumps(self.resources).replace(b"{catalog}", self.url.encode())
        return web.Response(body=body, content_type="application/json")

    async def spec(self, request: web.Request) -> web.Response:
        spec = self.specs.get(request.match_info["name"])
        if spec is None:
            return web.json_response({"error": "no such spec"}, status=404)
        return web.Response(body=orjson.dumps(spec), content_type="application/json")
