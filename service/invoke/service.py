"""`integrations.v1.invoke`: find the operation (reference §6.5 lookup), then run it by kind:

* provider built-in → the execute pipeline (`ExecuteService.run`: validation, credential, the
  same upstream client and error classification, usage in the call record); the body is the
  execute `params`;
* MCP tool / resource / prompt → the pooled SDK client (service/mcp/client.py);
* internal Symbia service → HTTP on the trusted internal family, with the caller's token, org,
  request id and trace context (internal services only);
* OpenAPI (and custom/builtin entries with a server URL) → HTTP through the outbound guard,
  the credential for the integration key, no platform headers.

`resolve` and `execute` are separate so that the MCP server endpoint can run a `tools/call`
through exactly this path.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from contracts import headers as h
from contracts.envelope import ErrorCategory, Reason
from contracts.execute import ExecuteParams, ExecuteRequest
from contracts.invoke import InvokeRequest
from service.auth.access import Access, Caller
from service.calls import CallRecord
from service.commands import Command, Reply
from service.credentials import Credential
from service.errors import GatewayError
from service.execute import ExecuteService
from service.invoke.auth import apply_auth, needs_credential, normalize_auth
from service.invoke.credentials import IntegrationCredentials
from service.invoke.http import build_request, invalid, response_data
from service.mcp.client import McpPool
from service.mcp.target import mcp_target
from service.registry.model import Entry
from service.registry.registry import Registry
from service.resilience.breakers import Admission
from service.resilience.core import Resilience
from service.resilience.deadline import Deadline, bounded, deadline_exceeded
from service.resilience.failures import RETRYABLE_STATUSES, UNHEALTHY_STATUSES, retryable_failure
from service.resilience.retry import fits
from service.settings import Settings
from service.transport import INTERNAL, OUTBOUND, HttpResponse, UpstreamTransport

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_MCP_RESULT_NOISE = ("_meta", "resultType", "ttlMs", "cacheScope")
# Trace context forwarded to internal services only.
_TRACE_HEADERS = (h.TRACEPARENT, h.TRACE_ID)


@dataclass(slots=True)
class InvokeResult:
    success: bool
    data: Any = None
    type: str | None = None
    status_code: int | None = None
    error: str | None = None
    content_type: str | None = None
    encoding: str | None = None
    attempts: int | None = None
    headers: dict[str, str] = field(default_factory=dict)     # reply headers (rate limits)

    def fields(self) -> dict[str, Any]:
        out = {"success": self.success, "data": self.data}
        extra = {"statusCode": self.status_code, "error": self.error, "type": self.type,
                 "contentType": self.content_type, "encoding": self.encoding, "attempts": self.attempts}
        out.update({k: v for k, v in extra.items() if v is not None})
        return out


def not_found(operation: str) -> GatewayError:
    return GatewayError(f"Operation not found: {operation}", ErrorCategory.not_found,
                        reason=Reason.OPERATION_NOT_FOUND)


def split_operation(operation: str) -> tuple[str, str]:
    """`[integrations.]<key>.<rest>` → (key, rest)."""
    path = operation.strip()
    if path.startswith("integrations."):
        path = path[len("integrations."):]
    key, _, rest = path.partition(".")
    if not key or not rest:
        raise not_found(operation)
    return key, rest


class InvokeService:
    request_id_prefix = "inv"

    def __init__(self, *, access: Access, registry: Registry, execute: ExecuteService, transport: UpstreamTransport,
                 mcp: McpPool, credentials: IntegrationCredentials, settings: Settings,
                 resilience: Resilience) -> None:
        self._access = access
        self._registry = registry
        self._execute = execute
        self._transport = transport
        self._mcp = mcp
        self._credentials = credentials
        self._settings = settings
        self._resilience = resilience

    async def __call__(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        record = command.record = CallRecord.start("invoke", caller)
        request = InvokeRequest.model_validate_json(command.body)
        record.operation = request.operation
        deadline = self.deadline(command, request.timeout)
        try:
            if deadline is not None:
                deadline.check()
            entry, op = await self.resolve(caller, request.operation)
            record.integration = entry.key
            result = await self.execute(caller, record, entry, op, request, command.headers, command.request_id,
                                        deadline=deadline)
        except GatewayError as exc:
            exc.provider = exc.provider or record.integration
            exc.operation = request.operation
            raise
        return command.json_reply(200, {**result.fields(), "requestId": command.request_id,
                                        "durationMs": command.elapsed_ms(), "operation": request.operation,
                                        "integration": entry.key}, result.headers)

    def deadline(self, command: Command, body_timeout_ms: int | None = None) -> Deadline | None:
        """The caller's deadline (x-deadline / x-timeout-ms / a body `timeout`), if it gave one;
        for `/invoke` and the MCP endpoint's tool calls alike."""
        return self._resilience.deadline(command.headers, command.started, body_timeout_ms)

    async def resolve(self, caller: Caller, operation: str) -> tuple[Entry, dict[str, Any]]:
        key, path = split_operation(operation)
        await self._registry.ready()
        entry = await self._registry.find(caller.org, key)
        if entry is None:
            raise not_found(operation)
        op = (await self._registry.operations(entry)).find(path)
        if op is None:
            raise not_found(operation)
        return entry, op

    async def execute(self, caller: Caller, record: CallRecord, entry: Entry, op: dict[str, Any],
                      request: InvokeRequest, headers: Mapping[str, str], request_id: str,
                      deadline: Deadline | None = None) -> InvokeResult:
        """Run a resolved operation. Provider built-ins get the execute pipeline's limits, circuit,
        retries and fallbacks; other integrations the caller's user and org request limits and a
        circuit per integration (docs/RESILIENCE.md)."""
        timeout_s = self._timeout(request)
        if entry.source == "provider":
            return await self._provider(caller, record, entry, op, request, timeout_s, deadline)
        if entry.type == "mcp":
            call = self._mcp_call
        elif op.get("path") is not None and op.get("method") and entry.server_url:
            call = self._http
        else:
            raise self._unsupported(entry)
        limiter = self._resilience.limiter
        permit = await limiter.acquire(limiter.caller_limits(caller, tokens=False))
        result = await call(caller, record, entry, op, request, headers, request_id, timeout_s, deadline)
        result.headers = permit.headers
        return result

    @staticmethod
    def _unsupported(entry: Entry) -> GatewayError:
        if entry.type == "openapi" and not entry.server_url:
            return GatewayError(f"No server URL configured for integration {entry.key}; register it with "
                                "openapi.serverUrl", ErrorCategory.validation, reason=Reason.INTEGRATION_MISCONFIGURED)
        return GatewayError(f"Unsupported integration type: {entry.type} (operation has no HTTP method and path, or "
                           "the integration no server URL)", ErrorCategory.validation,
                           reason=Reason.UNSUPPORTED_INTEGRATION)

    def _timeout(self, request: InvokeRequest) -> float:
        if request.timeout is None:
            return min(self._settings.invoke_timeout_s, self._settings.invoke_max_timeout_s)
        return min(request.timeout / 1000.0, self._settings.invoke_max_timeout_s)

    async def _credential(self, caller: Caller, record: CallRecord, entry: Entry, auth: dict[str, Any],
                          credential_id: str | None) -> Credential | None:
        if not needs_credential(auth):
            record.credential_source = "none"
            return None
        found = await self._credentials.resolve(caller, entry, credential_id)
        if found is None or not found.api_key:
            raise GatewayError(
                f"No credential configured for integration {entry.key} (auth {auth['type']}). "
                f"{self._credentials.where_to_add(entry)}",
                ErrorCategory.auth, status=400, reason=Reason.INTEGRATION_CREDENTIAL_MISSING)
        record.credential_source, record.credential_id = found.source, found.credential_id
        return found

    # --- provider built-ins ---------------------------------------------------------------------

    async def _provider(self, caller: Caller, record: CallRecord, entry: Entry, op: dict[str, Any],
                        request: InvokeRequest, timeout_s: float, deadline: Deadline | None) -> InvokeResult:
        raw = request.body if request.body is not None else request.params
        params = ExecuteParams.model_validate(raw)
        record.model_requested = params.model
        execute = ExecuteRequest(provider=entry.key, operation=op["operationId"], params=params,
                                 credentialId=request.credentialId)
        timeout = timeout_s if request.timeout is not None else None
        result = await self._execute.run_call(caller, execute, record, timeout_s=timeout, deadline=deadline)
        return InvokeResult(success=True, data=result.data, type="llm", headers=result.headers)

    # --- HTTP (OpenAPI, internal services) ----------------------------------------------------

    async def _http(self, caller: Caller, record: CallRecord, entry: Entry, op: dict[str, Any],
                    request: InvokeRequest, headers: Mapping[str, str], request_id: str,
                    timeout_s: float, deadline: Deadline | None) -> InvokeResult:
        internal = entry.source == "internal"
        fixed: dict[str, str] = {}
        if internal:
            auth: dict[str, Any] = {"type": "none"}
            record.credential_source = "caller"
            if caller.principal.token:
                fixed["authorization"] = f"Bearer {caller.principal.token}"
            fixed.update({h.ORG_ID: caller.org, h.REQUEST_ID: request_id, h.CALLER: "integrations"})
            fixed.update({name: headers[name] for name in _TRACE_HEADERS if headers.get(name)})
        else:
            auth = normalize_auth(entry.auth, entry.metadata)
        credential = await self._credential(caller, record, entry, auth, request.credentialId)
        applied = apply_auth(auth, credential.api_key if credential else None, entry.server_url)
        http_request = build_request(op, request.params, request.body, request.headers, entry.server_url or "",
                                     applied, fixed, authenticated=credential is not None or internal)
        family = INTERNAL if internal else OUTBOUND
        # Retried only when asked, and for POST/PATCH only when the caller says duplicates are safe.
        safe = (http_request.method in IDEMPOTENT or request.retryNonIdempotent
                or any(name.lower() == "idempotency-key" for name in request.headers))
        retries = min(request.retries, self._settings.invoke_max_retries) if safe else 0

        async def attempt(limit_s: float) -> HttpResponse:
            return await self._transport.fetch(family, http_request, limit_s, name=entry.key,
                                               operation=request.operation,
                                               max_redirects=self._settings.invoke_max_redirects)

        def verdict(response: HttpResponse) -> tuple[bool, bool, Mapping[str, str]]:
            return response.status in UNHEALTHY_STATUSES, response.status in RETRYABLE_STATUSES, response.headers

        response, attempts = await self._guarded(record, entry, timeout_s, deadline, retries, attempt, verdict)
        data, encoding = response_data(response)
        success = 200 <= response.status < 300
        error = None if success else f"{entry.key} answered HTTP {response.status} {response.reason}".strip()
        return InvokeResult(success=success, data=data, type="api-call", status_code=response.status, error=error,
                            content_type=response.content_type or None, encoding=encoding,
                            attempts=attempts if retries or attempts > 1 else None)

    async def _guarded(self, record: CallRecord, entry: Entry, timeout_s: float, deadline: Deadline | None,
                       retries: int, attempt: Callable[[float], Awaitable[Any]],
                       verdict: Callable[[Any], tuple[bool, bool, Mapping[str, str] | None]] | None = None
                       ) -> tuple[Any, int]:
        """One call of an integration through its circuit breaker, with up to `retries` retries
        (backoff, the upstream's Retry-After) inside the caller's deadline. `verdict(answer)`:
        (the answer says the upstream is unhealthy, it is worth retrying, its headers). The record
        counts the attempts (usage)."""
        breakers = self._resilience.breakers
        circuit = breakers.integration_circuit(entry.org, entry.key)
        number = 0
        while True:
            limit_s, cut = bounded(timeout_s, deadline)
            if limit_s <= 0:
                raise deadline_exceeded(f"{entry.key} answered", entry.key)
            admission: Admission | None = await breakers.admit(circuit, provider=entry.key, hold_s=limit_s,
                                                               org=entry.org)
            number += 1
            record.attempts = number
            try:
                answer = await attempt(limit_s)
            except GatewayError as exc:
                await breakers.finished(admission, exc, cut_short=cut)
                if cut and exc.category is ErrorCategory.timeout:
                    raise deadline_exceeded(f"{entry.key} answered", entry.key) from None
                delay = self._retry_delay(number, retries, exc.headers, deadline)
                if delay is None or not retryable_failure(exc):
                    raise
                await asyncio.sleep(delay)
                continue
            except BaseException as exc:
                breakers.finished_soon(admission, exc)
                raise
            unhealthy, retry, wait = verdict(answer) if verdict is not None else (False, False, None)
            failure = None
            if unhealthy:
                failure = GatewayError(f"{entry.key} answered with a server error", ErrorCategory.provider,
                                       reason=Reason.UPSTREAM_ERROR, provider=entry.key)
            await breakers.finished(admission, failure)
            delay = self._retry_delay(number, retries, wait, deadline) if retry else None
            if delay is None:
                return answer, number
            await asyncio.sleep(delay)

    def _retry_delay(self, number: int, retries: int, headers: Mapping[str, str] | None,
                     deadline: Deadline | None) -> float | None:
        """Seconds before retry `number`, or None: no retries left, the upstream asks for too long
        a wait, or the deadline would pass first."""
        if number > retries:
            return None
        delay = self._resilience.retry.delay(number, headers)
        if delay is None or not fits(deadline.remaining() if deadline else None, delay):
            return None
        return delay

    # --- MCP ------------------------------------------------------------------------------------

    async def _mcp_call(self, caller: Caller, record: CallRecord, entry: Entry, op: dict[str, Any],
                        request: InvokeRequest, headers: Mapping[str, str], request_id: str, timeout_s: float,
                        deadline: Deadline | None) -> InvokeResult:
        auth = normalize_auth(entry.auth, entry.metadata)
        credential = await self._credential(caller, record, entry, auth, request.credentialId)
        target = mcp_target(entry.mcp or {}, auth, credential.api_key if credential else None)
        args = request.body if request.body is not None else request.params
        if not isinstance(args, dict):
            raise invalid("MCP operations take an object of arguments in body (or params)")
        # Global entries are shared by orgs; their upstream sessions are not.
        pool_key = (self._registry.kv_key(entry), str(entry.version), caller.org if entry.org is None else "")
        if "mcpTool" in op:
            name = op["mcpTool"]["name"]
            kind = "mcp-tool"

            async def run(client):
                return await client.call_tool(name, args, read_timeout_seconds=timeout_s)
        elif "mcpResource" in op:
            uri = _resource_uri(op["mcpResource"], args)
            kind = "mcp-resource"

            async def run(client):
                return await client.read_resource(uri, cache_mode="bypass")
        elif "mcpPrompt" in op:
            name = op["mcpPrompt"]["name"]
            prompt_args = {k: v if isinstance(v, str) else str(v) for k, v in args.items() if v is not None}
            kind = "mcp-prompt"

            async def run(client):
                return await client.get_prompt(name, prompt_args)
        else:
            raise GatewayError(f"Operation {op['id']} of {entry.key} is not an MCP tool, resource or prompt",
                               ErrorCategory.validation, reason=Reason.UNSUPPORTED_INTEGRATION)

        async def attempt(limit_s: float):
            try:
                # The SDK's read timeout is timeout_s; this bounds connecting too (and the deadline).
                async with asyncio.timeout(limit_s + 5 if limit_s >= timeout_s else limit_s):
                    return await self._mcp.call(pool_key, target, entry.key, request.operation, run)
            except TimeoutError:
                raise GatewayError(f"MCP server {entry.key} did not answer in time", ErrorCategory.timeout,
                                   reason=Reason.UPSTREAM_TIMEOUT) from None

        # MCP calls are not retried: a tool call may have effects.
        result, _ = await self._guarded(record, entry, timeout_s, deadline, 0, attempt)
        data = result.model_dump(by_alias=True, exclude_none=True, mode="json")
        for noise in _MCP_RESULT_NOISE:
            data.pop(noise, None)
        failed = bool(data.get("isError"))
        error = None
        if failed:
            texts = [c.get("text", "") for c in data.get("content") or [] if c.get("type") == "text"]
            error = (" ".join(texts) or f"{entry.key} reported a tool error")[:1000]
        return InvokeResult(success=not failed, data=data, type=kind, error=error)


def _resource_uri(ref: dict[str, Any], args: dict[str, Any]) -> str:
    if ref.get("uriTemplate"):
        uri = ref["uriTemplate"]
        for name in list(args):
            uri = uri.replace("{" + name + "}", quote(str(args[name]), safe=""))
        if "{" in uri:
            raise invalid(f"Missing argument for resource template {ref['uriTemplate']}")
        return uri
    return str(args.get("uri") or ref.get("uri") or "")
