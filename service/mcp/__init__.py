"""MCP: the client side (registered MCP servers discovered and called through the official SDK:
client.py, operations.py, target.py) and the worker side of the gateway's own MCP endpoint
(the caller's tools and their calls: toolset.py, schemas.py, results.py, endpoint.py)."""
