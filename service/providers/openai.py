"""OpenAI and every OpenAI-compatible server: OPENAI_BASE_URL (vLLM, llama.cpp, Ollama...),
the symbia-labs Models service and the providers declared in the providers file.

One adapter, parameterised by what differs between those servers: the name it reports, how
the key is sent, fixed headers, and which field carries the token limit.
"""

from collections.abc import Mapping
from typing import Any, Literal

from contracts.execute import ExecuteParams
from service.errors import GatewayError
from service.providers import chat_format, responses_format
from service.providers.base import BEARER, AuthStyle, OperationSpec, StreamDecoder, UpstreamCall
from service.providers.errors import classify_upstream, error_fields
from service.providers.models import is_reasoning_model


class OpenAIAdapter:
    def __init__(
        self,
        base_url: str,
        organization: str | None = None,
        *,
        name: str = "openai",
        auth: AuthStyle = BEARER,
        headers: Mapping[str, str] | None = None,
        max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None,
        developer_as_system: bool = False,
        chat_metadata: Mapping[str, Any] | None = None,
        stream_usage: bool = True,
    ) -> None:
        self.name = name
        self.base_url = base_url
        self.organization = organization
        self.auth = auth
        self.fixed_headers = dict(headers or {})
        # None: OpenAI's own rule (reasoning models take max_completion_tokens). Compatible
        # servers are configured explicitly; most of them only know max_tokens.
        self.max_tokens_field = max_tokens_field
        self.developer_as_system = developer_as_system
        self.chat_metadata = dict(chat_metadata or {})
        # Streams ask for usage with `stream_options.include_usage` (servers that reject unknown
        # fields turn it off; without reported usage the gateway estimates it).
        self.stream_usage = stream_usage

    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {**self.fixed_headers, **self.auth.headers(api_key)}
        if self.organization:
            headers["openai-organization"] = self.organization
        return headers

    def _token_field(self, model: str) -> str:
        if self.max_tokens_field:
            return self.max_tokens_field
        return "max_completion_tokens" if is_reasoning_model(model) else "max_tokens"

    def build(self, op: OperationSpec, params: ExecuteParams, api_key: str | None) -> UpstreamCall:
        headers = self.headers(api_key)
        if op.kind == "embeddings":
            body: dict[str, Any] = {"model": params.model, "input": params.input if params.input is not None
                                    else params.text}
            if params.dimensions is not None:
                body["dimensions"] = params.dimensions
            if params.user is not None:
                body["user"] = params.user
            return UpstreamCall("POST", f"{self.base_url}/embeddings", body, headers)
        if op.kind == "responses":
            return UpstreamCall("POST", f"{self.base_url}/responses", responses_format.body(params), headers)
        body = chat_format.chat_body(params, max_tokens_field=self._token_field(params.model),
                                     developer_as_system=self.developer_as_system)
        return UpstreamCall("POST", f"{self.base_url}/chat/completions", body, headers)

    def build_stream(self, op: OperationSpec, params: ExecuteParams,
                     api_key: str | None) -> tuple[UpstreamCall, StreamDecoder]:
        call = self.build(op, params, api_key)  # chat-API operations only (capability table)
        return (UpstreamCall(call.method, call.url, chat_format.stream_body(call.body, self.stream_usage),
                             call.headers),
                chat_format.ChatChunkDecoder(self.name, op.name, self.chat_metadata))

    def parse(self, op: OperationSpec, params: ExecuteParams, payload: Any) -> dict[str, Any]:
        if op.kind == "embeddings":
            return chat_format.parse_embeddings(self.name, params.model, payload)
        if op.kind == "responses":
            return responses_format.parse(self.name, params.model, payload)
        data = chat_format.parse_chat(self.name, params.model, payload)
        data["metadata"].update(self.chat_metadata)
        return data

    def error(self, op: OperationSpec, status: int, payload: Any, headers: Mapping[str, str]) -> GatewayError:
        code, kind, message = error_fields(payload)
        return classify_upstream(provider=self.name, operation=op.name, status=status, code=code,
                                 error_type=kind, message=message, headers=headers)

    # --- ModelLister (discovery) ---------------------------------------------------------------

    def models_call(self, api_key: str | None) -> UpstreamCall:
        return UpstreamCall("GET", f"{self.base_url}/models", None, self.headers(api_key))

    def parse_models(self, payload: Any) -> list[str]:
        """The original's filter (reference §5.2): GPT, o-series and embedding models, no
        fine-tunes, no -instruct, nothing the account owns itself; newest first."""
        items = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(items, list):
            raise ValueError("model list has no data array")
        kept = []
        for item in items:
            model = item.get("id") if isinstance(item, dict) else None
            if not isinstance(model, str):
                continue
            wanted = model.startswith(("gpt-", "o1", "o3", "o4")) or "embedding" in model
            unwanted = "ft:" in model or ":ft-" in model or "-instruct" in model or item.get("owned_by") == "user"
            if wanted and not unwanted:
                kept.append((item.get("created") or 0, model))
        kept.sort(key=lambda pair: pair[0], reverse=True)
        return [model for _, model in kept]
