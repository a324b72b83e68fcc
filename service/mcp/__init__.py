"""MCP client side: registered MCP servers discovered and called through the official SDK."""
