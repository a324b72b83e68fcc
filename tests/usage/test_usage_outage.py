"""A store outage while calls keep coming: replies do not wait, the events wait in the
stream, and once the database is back every event lands exactly once."""

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit

from tests.conftest import free_port
from tests.usage.conftest import PG_URL, gateway, new_org, stream_events


class TcpProxy:
    """A loopback TCP relay to PostgreSQL that the test can cut (every connection reset) and
    restore: a database that goes away and comes back, as seen from the gateway."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


async def test_postgres_outage_then_every_event_lands_exactly_once(llmock):
    target = urlsplit(PG_URL)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    proxied = urlunsplit(target._replace(netloc=f"{target.username or 'postgres'}@127.0.0.1:{proxy.port}"))
    async with gateway("postgres", llmock.base_url, database_url=proxied) as g:
        org = new_org()
        for _ in range(3):
            assert (await g.execute(org))[0] == 200
        await g.wait_rows(org, 3)

        await proxy.stop()  # the database is gone
        replies = await asyncio.gather(*(g.execute(org) for _ in range(20)))
        assert all(status == 200 for status, _, _ in replies)
        status, body, _ = await g.call("integrations.v1.usage.summary", org=org)
        assert status == 503 and body["reason"] == "store_unavailable" and body["retryable"] is True
        status, body, _ = await g.call("integrations.v1.db.status", org=org)
        assert status == 200 and body["ready"] is False and body["consumerLag"] >= 1
        await asyncio.sleep(1.0)  # a few failed write attempts

        await proxy.start()  # back
        await g.wait_rows(org, 23, timeout_s=30)
        await asyncio.sleep(0.5)
        assert (await g.summary(org))["summary"]["totalRequests"] == 23
        assert len(await stream_events(g.nc, org)) == 23
        status, body, _ = await g.call("integrations.v1.db.status", org=org)
        assert body["ready"] is True and body["rowCount"] == 23 and body["consumerLag"] == 0
    await proxy.stop()
