"""Invoke: one operation of a registered integration (OpenAPI, MCP, provider built-in)."""
