"""An MCP server built with the official SDK (`mcp` 2.x `MCPServer`): two tools, a resource,
a resource template and a prompt. Run as a process by the test fixtures:

    python -m tests.fakes.mcp_server http <port>     # streamable HTTP on 127.0.0.1:<port>/mcp
    python -m tests.fakes.mcp_server sse <port>      # the deprecated HTTP+SSE transport (/sse)
    python -m tests.fakes.mcp_server stdio           # stdio

The tool `whoami` answers with the Authorization header the server received, so tests can
check what credential the gateway sent (never a real secret).
"""

import sys

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("symbia-test-mcp", instructions="Test server for the integrations gateway")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool(name="read_file")
def read_file(path: str) -> str:
    """Pretend to read a file (a tool name with an underscore)."""
    return f"contents of {path}"


@server.tool()
def fail(message: str) -> str:
    """Always fails with the given message."""
    raise ValueError(message)


@server.tool()
def whoami(ctx: Context) -> str:
    """The Authorization header of the HTTP request (empty over stdio)."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", None) or {}
    return headers.get("authorization", "")


@server.resource("config://app", name="app-config", description="The app configuration", mime_type="application/json")
def app_config() -> str:
    return '{"feature": true}'


@server.resource("greeting://{name}", name="greeting", description="A greeting for a name")
def greeting(name: str) -> str:
    return f"Hello, {name}!"


@server.prompt(name="review", description="Ask for a code review")
def review(code: str, language: str = "python") -> str:
    return f"Please review this {language} code:\n{code}"


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    elif sys.argv[1] == "sse":
        server.run("sse", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
