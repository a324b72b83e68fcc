"""A real HTTP server for the streaming tests: client disconnects and the openai SDK (which
brings its own HTTP client) need a socket, not an in-process ASGI transport."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import uvicorn

from api.app import create_app
from tests.conftest import free_port


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # the test session keeps its own signal handling
        yield


@pytest.fixture(scope="session")
async def gateway_url(worker, api_settings) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(create_app(api_settings), host="127.0.0.1", port=port, loop="asyncio",
                            http="httptools", access_log=False, log_level="warning", lifespan="on")
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started, "the HTTP adapter did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(task, 10)


@pytest.fixture
def recorded(worker):
    """Call records the workers report, with their replies (what the usage pipeline receives)."""
    seen: list = []

    async def observe(command, reply):
        seen.append((command.record, reply))

    worker.services.observers.append(observe)
    yield seen
    worker.services.observers.remove(observe)
