"""The worker side of the gateway's MCP endpoint (docs/MCP.md): authenticate a request, list the
caller's tools a page at a time, call one, describe the server, cancel a running call.

A `tools/call` validates the arguments against the tool's input schema (the SDK's low-level
server does not), splits them into the operation's parameters and body, and runs the operation
through invoke (`InvokeService.resolve` + `execute`): the same credentials, outbound guard,
execute pipeline, rate limits, circuit breakers and deadline (docs/RESILIENCE.md) and call
record as `/invoke`, with `kind: "mcp"`.

Cancellation: the api publishes `integrations.v1.mcp.cancel {requestId}` to every worker when the
client cancels (or goes away, on the 2026 protocol). The worker running that request, for the
same principal and org, cancels it; the call then ends with 499 `cancelled`. A cancel that
arrives before its call is remembered for a minute, so the call is refused when it starts.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import OrderedDict
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from contracts.envelope import ErrorCategory, Reason
from contracts.invoke import InvokeRequest
from contracts.mcp import (
    ENDPOINT_PATH,
    LATEST_PROTOCOL_VERSION,
    PROTOCOL_VERSIONS,
    SERVER_NAME,
    McpCancelRequest,
    McpInfoRequest,
    ToolsCallRequest,
    ToolsListRequest,
)
from service import __version__
from service.auth.access import Access, Caller
from service.calls import CallRecord
from service.commands import Command, Reply
from service.errors import GatewayError
from service.invoke.service import InvokeResult, InvokeService
from service.mcp.results import tool_result
from service.mcp.toolset import Tool, ToolCatalog, page_start

INFO_TOOLS = 50
_EARLY_CANCEL_TTL_S = 60.0
_EARLY_CANCEL_MAX = 4096
_MAX_ARGUMENT_ERRORS = 5


def invalid_cursor() -> GatewayError:
    return GatewayError("Invalid cursor: pass the nextCursor of the previous tools/list page, unchanged",
                        ErrorCategory.validation, reason=Reason.INVALID_CURSOR)


def encode_cursor(after: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"after": after})).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise invalid_cursor() from None
    after = data.get("after") if isinstance(data, dict) else None
    if not isinstance(after, str):
        raise invalid_cursor()
    return after


def cancelled() -> GatewayError:
    return GatewayError("The call was cancelled by the client", ErrorCategory.validation, status=499,
                        reason=Reason.CANCELLED)


@dataclass(slots=True)
class _Running:
    principal: str
    org: str
    task: asyncio.Task
    cancelled: bool = False


class McpEndpointService:
    request_id_prefix = "mcp"

    def __init__(self, *, access: Access, tools: ToolCatalog, invoke: InvokeService, page_size: int) -> None:
        self._access = access
        self._tools = tools
        self._invoke = invoke
        self._page_size = page_size
        self._running: dict[str, _Running] = {}
        self._early: OrderedDict[str, tuple[str, str, float]] = OrderedDict()

    async def authenticate(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        return command.json_reply(200, {"principal": {"id": caller.principal.id, "type": caller.principal.type},
                                        "org": caller.org})

    async def tools_list(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        request = ToolsListRequest.model_validate_json(command.body or b"{}")
        after = decode_cursor(request.cursor)
        tools = await self._tools.for_caller(caller)
        start = page_start(tools, after)
        page = tools[start:start + self._page_size]
        body: dict[str, Any] = {"tools": [tool.wire for tool in page]}
        if start + len(page) < len(tools):
            body["nextCursor"] = encode_cursor(page[-1].name)
        return command.json_reply(200, body)

    async def info(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        McpInfoRequest.model_validate_json(command.body or b"{}")
        tools = await self._tools.for_caller(caller)
        return command.json_reply(200, {
            "server": {"name": SERVER_NAME, "version": __version__, "protocol": LATEST_PROTOCOL_VERSION,
                       "protocolVersions": list(PROTOCOL_VERSIONS)},
            "capabilities": {"tools": True, "resources": False, "prompts": False},
            "toolCount": len(tools),
            "tools": [{"name": t.name, "integration": t.key, "operation": t.operation,
                       "description": t.summary or t.wire.get("description"), "tags": t.tags}
                      for t in tools[:INFO_TOOLS]],
            "endpoint": ENDPOINT_PATH,
        })

    async def tools_call(self, command: Command) -> Reply:
        caller = await self._access.caller(command.headers)
        record = command.record = CallRecord.start("mcp", caller)
        request = ToolsCallRequest.model_validate_json(command.body)
        tool = await self._tools.find(caller, request.name)
        if tool is None:
            raise GatewayError(f"Unknown tool: {request.name}", ErrorCategory.not_found, reason=Reason.TOOL_NOT_FOUND)
        record.integration, record.operation = tool.key, tool.path
        arguments = request.arguments or {}
        deadline = self._invoke.deadline(command)     # a bus caller's x-deadline / x-timeout-ms
        try:
            if deadline is not None:
                deadline.check()
            self._check_arguments(tool, arguments)
            params, body = tool.plan.split(arguments)
            entry, op = await self._invoke.resolve(caller, tool.path)
            invoke = InvokeRequest.model_construct(operation=tool.path, params=params, body=body, headers={},
                                                   timeout=None, retries=0, credentialId=None)
            result = await self._cancellable(command.request_id, caller, self._invoke.execute(
                caller, record, entry, op, invoke, command.headers, command.request_id, deadline=deadline))
        except GatewayError as exc:
            exc.provider = exc.provider or tool.key
            exc.operation = exc.operation or tool.path
            raise
        return command.json_reply(200, tool_result(tool, result))

    @staticmethod
    def _check_arguments(tool: Tool, arguments: dict[str, Any]) -> None:
        errors = sorted(tool.validator("input").iter_errors(arguments), key=lambda e: list(e.absolute_path))
        if not errors:
            return
        problems = []
        for error in errors[:_MAX_ARGUMENT_ERRORS]:
            where = ".".join(str(p) for p in error.absolute_path)
            problems.append(f"{where}: {error.message[:300]}" if where else error.message[:300])
        more = f" (+{len(errors) - _MAX_ARGUMENT_ERRORS} more)" if len(errors) > _MAX_ARGUMENT_ERRORS else ""
        raise GatewayError(f"Invalid arguments for {tool.name}: {'; '.join(problems)}{more}",
                           ErrorCategory.validation, reason=Reason.INVALID_ARGUMENTS)

    # --- cancellation ------------------------------------------------------------------------

    async def _cancellable(self, request_id: str, caller: Caller,
                           work: Coroutine[Any, Any, InvokeResult]) -> InvokeResult:
        early = self._early.pop(request_id, None)
        if early is not None and early[:2] == (caller.principal.id, caller.org) and early[2] > time.monotonic():
            work.close()
            raise cancelled()
        task = asyncio.ensure_future(work)
        running = self._running[request_id] = _Running(caller.principal.id, caller.org, task)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if running.cancelled and not (current and current.cancelling()):
                raise cancelled() from None
            task.cancel()   # the worker itself is stopping
            raise
        finally:
            if self._running.get(request_id) is running:
                del self._running[request_id]

    async def cancel(self, headers: Mapping[str, str], body: bytes) -> None:
        """`integrations.v1.mcp.cancel` (fan-out, no reply): cancel the caller's running call."""
        try:
            request = McpCancelRequest.model_validate_json(body)
            caller = await self._access.caller(headers)
        except (GatewayError, ValidationError):
            return
        running = self._running.get(request.requestId)
        if running is None:
            now = time.monotonic()
            self._early[request.requestId] = (caller.principal.id, caller.org, now + _EARLY_CANCEL_TTL_S)
            while self._early and (len(self._early) > _EARLY_CANCEL_MAX or next(iter(self._early.values()))[2] < now):
                self._early.popitem(last=False)
            return
        if (running.principal, running.org) == (caller.principal.id, caller.org) and not running.task.done():
            running.cancelled = True
            running.task.cancel()
