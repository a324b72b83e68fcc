"""The MCP server endpoint `/api/integrations/mcp` (docs/MCP.md): Streamable HTTP through the
official SDK's low-level server in this process, tools and calls from the workers over the bus.

* endpoint.py: the ASGI endpoint: Origin/Host checks, caller authentication, the SDK's session
  manager (both protocol eras on one path);
* server.py: the SDK server whose handlers are bus requests (tools/list, tools/call), with
  progress notifications and cancellation;
* notify.py: `notifications/tools/list_changed` to connected clients when the registry changes.
"""

from api.mcp.endpoint import McpEndpoint

__all__ = ["McpEndpoint"]
