"""A fake of the Catalog service's `GET /api/bootstrap`: a list of resources, the stock
integrations bootstrap's provider configs by default (reference §1.1, §5.1)."""

import copy
from typing import Any

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
     "type": "integration", "metadata": {"integrationType": "openapi", "specUrl": "http://example.invalid/spec"}},
]


class FakeCatalog(LoopbackServer):
    name = "fake-catalog"

    def __init__(self) -> None:
        super().__init__()
        self.resources = copy.deepcopy(STOCK_RESOURCES)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/bootstrap", self.bootstrap)

    async def bootstrap(self, request: web.Request) -> web.Response:
        return web.json_response(self.resources)
