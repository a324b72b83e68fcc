"""HuggingFace: the Inference router (OpenAI-compatible chat), TGI and TEI.

Which wire format each operation uses is a setting, because the same model can sit behind
the router, a TGI server or a TEI server (README, "HuggingFace formats"):

* chat.completions / image.description: `POST {base}/v1/chat/completions` (router, TGI Messages API)
* text.generation: `chat` (as chat.completions, a prompt becomes one user message) or `tgi`
  (`POST {base}/generate` with `inputs` + `parameters`, TGI's native API; messages still go to chat;
  streamed: `POST {base}/generate_stream`)
* embeddings: `hf-inference` (`POST {base}/hf-inference/models/{model}/pipeline/feature-extraction`),
  `tei` (`POST {base}/embed`) or `openai` (`POST {base}/v1/embeddings`)
"""

from collections.abc import Mapping
from typing import Any

from contracts.execute import ExecuteParams
from service.errors import GatewayError
from service.providers import chat_format
from service.providers.base import OperationSpec, StreamChunk, StreamDecoder, UpstreamCall
from service.providers.errors import (
    classify_upstream,
    error_fields,
    retry_after_header,
    stream_event_object,
    stream_failure,
)


class HuggingFaceAdapter:
    name = "huggingface"

    def __init__(self, base_url: str, text_generation_api: str = "chat", embeddings_api: str = "hf-inference"):
        self.base_url = base_url
        self.text_generation_api = text_generation_api
        self.embeddings_api = embeddings_api

    def _uses_tgi(self, op: OperationSpec, params: ExecuteParams) -> bool:
        return op.kind == "generate" and self.text_generation_api == "tgi" and not params.messages

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"} if api_key else {}

    def build(self, op: OperationSpec, params: ExecuteParams, api_key: str | None) -> UpstreamCall:
        headers = self.headers(api_key)
        if op.kind == "embeddings":
            return self._embeddings(params, headers)
        if self._uses_tgi(op, params):
            return UpstreamCall("POST", f"{self.base_url}/generate", self._tgi_body(params), headers)
        return UpstreamCall("POST", f"{self.base_url}/v1/chat/completions",
                            chat_format.chat_body(params, developer_as_system=True), headers)

    def build_stream(self, op: OperationSpec, params: ExecuteParams,
                     api_key: str | None) -> tuple[UpstreamCall, StreamDecoder]:
        call = self.build(op, params, api_key)  # chat, vision and generate only (capability table)
        if self._uses_tgi(op, params):
            return (UpstreamCall(call.method, f"{self.base_url}/generate_stream", call.body, call.headers),
                    TgiStreamDecoder(self.name, op.name))
        return (UpstreamCall(call.method, call.url, chat_format.stream_body(call.body), call.headers),
                chat_format.ChatChunkDecoder(self.name, op.name))

    def _embeddings(self, params: ExecuteParams, headers: dict[str, str]) -> UpstreamCall:
        inputs = params.input if params.input is not None else params.text
        if self.embeddings_api == "openai":
            return UpstreamCall("POST", f"{self.base_url}/v1/embeddings", {"model": params.model, "input": inputs},
                                headers)
        batch = [inputs] if isinstance(inputs, str) else inputs
        if self.embeddings_api == "tei":
            return UpstreamCall("POST", f"{self.base_url}/embed", {"inputs": batch}, headers)
        url = f"{self.base_url}/hf-inference/models/{params.model}/pipeline/feature-extraction"
        return UpstreamCall("POST", url, {"inputs": batch}, headers)

    @staticmethod
    def _tgi_body(params: ExecuteParams) -> dict[str, Any]:
        # decoder_input_details returns the prompt tokens, so usage counts them too.
        parameters: dict[str, Any] = {"details": True, "decoder_input_details": True, "return_full_text": False}
        optional = {
            "max_new_tokens": params.maxTokens, "temperature": params.temperature, "top_p": params.topP,
            "top_k": params.topK, "seed": params.seed, "stop": chat_format.stop_list(params),
            "frequency_penalty": params.frequencyPenalty,
        }
        parameters.update({k: v for k, v in optional.items() if v is not None})
        system = chat_format.system_prompt(params)
        prompt = f"{system}\n\n{params.prompt}" if system else params.prompt
        return {"inputs": prompt, "parameters": parameters}

    def parse(self, op: OperationSpec, params: ExecuteParams, payload: Any) -> dict[str, Any]:
        if op.kind == "embeddings":
            data = chat_format.parse_embeddings(self.name, params.model, payload)
            data["model"] = params.model  # TEI and hf-inference do not echo the model
            return data
        if self._uses_tgi(op, params):
            return self._parse_tgi(params, payload)
        return chat_format.parse_chat(self.name, params.model, payload)

    def _parse_tgi(self, params: ExecuteParams, payload: Any) -> dict[str, Any]:
        item = payload[0] if isinstance(payload, list) and payload else payload
        if not isinstance(item, dict) or "generated_text" not in item:
            raise ValueError("TGI answer has no generated_text")
        details = item.get("details") or {}
        completion = chat_format.as_int(details.get("generated_tokens"))
        prompt = len(details.get("prefill") or [])
        return {
            "provider": self.name,
            "model": params.model,
            "content": item["generated_text"],
            "usage": {"promptTokens": prompt, "completionTokens": completion, "totalTokens": prompt + completion},
            "finishReason": chat_format.finish_reason(details.get("finish_reason")),
            "metadata": {k: v for k, v in {"seed": details.get("seed")}.items() if v is not None},
        }

    def error(self, op: OperationSpec, status: int, payload: Any, headers: Mapping[str, str]) -> GatewayError:
        code, kind, message = error_fields(payload)
        err = classify_upstream(provider=self.name, operation=op.name, status=status, code=code,
                                error_type=kind, message=message, headers=headers)
        # A cold model on the router answers 503 with the time it needs to load.
        if status == 503 and isinstance(payload, dict) and "estimated_time" in payload and not err.headers:
            err.headers = retry_after_header({"retry-after": str(max(1, round(float(payload["estimated_time"]))))})
        return err


class TgiStreamDecoder:
    """TGI's `/generate_stream`: one `data: {"token": {"text", "special"}, "generated_text", "details"}`
    event per token; the last one carries `generated_text` and `details` (finish reason and
    generated token count); there is no `[DONE]`."""

    def __init__(self, provider: str, operation: str) -> None:
        self._provider = provider
        self._operation = operation

    def decode(self, event: str | None, data: str) -> StreamChunk | None:
        payload = stream_event_object(self._provider, self._operation, data)
        if payload.get("error"):
            raise stream_failure(self._provider, self._operation, payload)
        token = payload.get("token") or {}
        chunk = StreamChunk()
        if isinstance(token, dict) and not token.get("special") and token.get("text"):
            chunk.content = token["text"]
        details = payload.get("details")
        if payload.get("generated_text") is not None or isinstance(details, dict):
            details = details if isinstance(details, dict) else {}
            chunk.done = True
            chunk.finish_reason = details.get("finish_reason") or "stop"
            if details.get("generated_tokens") is not None:
                chunk.usage = {"completionTokens": chat_format.as_int(details.get("generated_tokens"))}
            if details.get("seed") is not None:
                chunk.metadata = {"seed": details["seed"]}
        return chunk
