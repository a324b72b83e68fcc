"""The one pipeline of calls, streams and jobs (handlers/bus.py): observers see authenticated
calls, and an observer that fails changes nothing about the call."""

import logging

from handlers.bus import notify, run_observed
from service.auth.access import Caller
from service.auth.principal import Principal
from service.calls import CallRecord
from service.commands import Command, Reply

CALLER = Caller(Principal(id="p1", type="api_key", organizations=None), "o1")


async def test_a_failing_observer_is_logged_and_the_reply_and_other_observers_are_unchanged(caplog):
    seen = []

    async def broken(command, reply):
        raise RuntimeError("usage sink down")

    async def fine(command, reply):
        seen.append((command.request_id, reply.status))

    async def handler(command: Command) -> Reply:
        command.record = CallRecord.start("execute", CALLER)
        return Reply(200, b'{"success":true}')

    with caplog.at_level(logging.ERROR, logger="symbia.integrations.bus"):
        reply = await run_observed(handler, Command(b"{}", {}, "req_1"), [broken, fine])
    assert reply.status == 200 and reply.body == b'{"success":true}'
    assert seen == [("req_1", 200)]
    assert "req_1" in caplog.text and "usage sink down" in caplog.text


async def test_unauthenticated_commands_are_not_observed():
    seen = []

    async def observe(command, reply):
        seen.append(command)

    async def handler(command: Command) -> Reply:
        raise ValueError("a bug before authentication")

    reply = await run_observed(handler, Command(b"{}", {}, "req_2"), [observe])
    assert reply.status == 500 and seen == []
    await notify([observe], Command(b"{}", {}, "req_3"), reply)
    assert seen == []
