"""Anthropic: `POST {ANTHROPIC_BASE_URL}/v1/messages` for chat.completions, messages and
image.description, also streamed (`"stream": true`, Messages API events). The wire format
lives in anthropic_format; this is the adapter around it.

The Messages API requires `max_tokens`. A request without maxTokens asks for the model's
`default_max_tokens` from models.json (then its max_output_tokens), and for a model the table
does not know, ANTHROPIC_DEFAULT_MAX_TOKENS.
"""

from collections.abc import Mapping
from typing import Any

from contracts.envelope import ErrorCategory, Reason
from contracts.execute import ExecuteParams
from service.errors import GatewayError
from service.providers import anthropic_format
from service.providers.base import OperationSpec, StreamDecoder, UpstreamCall
from service.providers.errors import classify_upstream, error_fields
from service.providers.models import model_info


class AnthropicAdapter:
    name = "anthropic"

    def __init__(self, base_url: str, version: str, default_max_tokens: int) -> None:
        self.base_url = base_url
        self.version = version
        self.default_max_tokens = default_max_tokens

    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": self.version}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def max_tokens(self, params: ExecuteParams) -> int:
        if params.maxTokens is not None:
            return params.maxTokens
        info = model_info(self.name, params.model)
        if info is not None and (info.default_max_tokens or info.max_output_tokens):
            return info.default_max_tokens or info.max_output_tokens  # type: ignore[return-value]
        return self.default_max_tokens

    def build(self, op: OperationSpec, params: ExecuteParams, api_key: str | None) -> UpstreamCall:
        try:
            body = anthropic_format.body(params, max_tokens=self.max_tokens(params))
        except anthropic_format.ConversionError as exc:
            raise GatewayError(f"Invalid params: {exc}", ErrorCategory.validation, reason=Reason.INVALID_REQUEST,
                               provider=self.name, operation=op.name) from None
        return UpstreamCall("POST", f"{self.base_url}/v1/messages", body, self.headers(api_key))

    def build_stream(self, op: OperationSpec, params: ExecuteParams,
                     api_key: str | None) -> tuple[UpstreamCall, StreamDecoder]:
        call = self.build(op, params, api_key)
        return (UpstreamCall(call.method, call.url, {**call.body, "stream": True}, call.headers),
                anthropic_format.AnthropicStreamDecoder(self.name, op.name))

    def parse(self, op: OperationSpec, params: ExecuteParams, payload: Any) -> dict[str, Any]:
        return anthropic_format.parse(self.name, params.model, payload)

    def error(self, op: OperationSpec, status: int, payload: Any, headers: Mapping[str, str]) -> GatewayError:
        code, kind, message = error_fields(payload)
        return classify_upstream(provider=self.name, operation=op.name, status=status, code=code,
                                 error_type=kind, message=message, headers=headers)
