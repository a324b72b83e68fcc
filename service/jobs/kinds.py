"""Which commands can run as jobs: kind → the request-reply twin's handler.

A job of a kind runs exactly the handler its request-reply twin runs, so its result is the body
and status the twin would reply. Services.job_handlers maps the kinds that exist (execute,
invoke, register); a kind without an entry (one a deployment switched off) is refused with 400
`job_kind_unavailable`. Adding one is a line in service/container.py.
"""

from dataclasses import dataclass

from pydantic import BaseModel

from service.commands import Handler


@dataclass(frozen=True, slots=True)
class JobHandler:
    handler: Handler                    # (Command) -> Reply, the same object the request-reply subject runs
    request_id_prefix: str              # ids of jobs submitted without one: <prefix>_<32 hex>
    request_model: type[BaseModel]      # checked at submission, so a malformed batch queues nothing
