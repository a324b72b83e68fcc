"""`notifications/tools/list_changed` when the registry changes.

The workers publish `integrations.v1.events.registry.<org|_global>.<key>` on every registration,
update, refresh and delete; every api process subscribes and tells its own connected clients
whose org sees the change (the entry's org, or everyone for a global entry):

* 2025 protocol (stateful sessions): on the session's standalone stream (the client's GET);
* 2026 protocol: on the open `subscriptions/listen` streams that asked for `toolsListChanged`,
  one SDK `ListenHandler` per org so a stream only hears about its own org.

Changes the registry does not announce (a provider credential added for a caller, which changes
whether the provider's tools are listed) are not notified; clients see them on the next list.
"""

import logging
import weakref
from typing import Any

import orjson
from mcp.server import ServerRequestContext
from mcp.server.connection import Connection
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp_types import SubscriptionsListenRequestParams, SubscriptionsListenResult
from nats.aio.msg import Msg

log = logging.getLogger("symbia.integrations.api.mcp")


class ListChangedNotifier:
    def __init__(self, org_of) -> None:
        self._org_of = org_of     # ServerRequestContext → the caller's org
        self._sessions: weakref.WeakKeyDictionary[Connection, str] = weakref.WeakKeyDictionary()
        self._listeners: dict[str, tuple[InMemorySubscriptionBus, ListenHandler]] = {}

    def track(self, connection: Connection, org: str) -> None:
        """A stateful 2025 session of a caller in `org` (the session is bound to that caller)."""
        if connection not in self._sessions:
            self._sessions[connection] = org
            connection.exit_stack.callback(self._sessions.pop, connection, None)

    async def listen(self, ctx: ServerRequestContext[Any, Any],
                     params: SubscriptionsListenRequestParams) -> SubscriptionsListenResult:
        """`subscriptions/listen` (2026): the SDK's handler, on the bus of the caller's org."""
        org = self._org_of(ctx)
        found = self._listeners.get(org)
        if found is None:
            bus = InMemorySubscriptionBus()
            found = self._listeners[org] = (bus, ListenHandler(bus))
        return await found[1](ctx, params)

    async def on_registry_event(self, msg: Msg) -> None:
        try:
            event = orjson.loads(msg.data)
            org = event.get("org")
        except (orjson.JSONDecodeError, AttributeError):
            return
        for connection, session_org in list(self._sessions.items()):
            if org is None or session_org == org:
                await connection.send_tool_list_changed()   # best effort: never raises
        for listen_org, (bus, _) in list(self._listeners.items()):
            if org is None or listen_org == org:
                await bus.publish(ToolsListChanged())

    def close(self) -> None:
        """Ends the open listen streams gracefully (the SDK sends their final result)."""
        for _, handler in self._listeners.values():
            handler.close()
