"""Claim check for payloads above the server's max_payload (docs/CONTRACTS.md): the body is
stored in the JetStream object store and the message carries only its name."""

import uuid

from nats.aio.client import Client
from nats.js.api import ObjectStoreConfig
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from contracts.envelope import ErrorCategory, Reason
from contracts.subjects import PAYLOAD_BUCKET, PAYLOAD_BUCKET_DESCRIPTION, PAYLOAD_TTL_S
from service.errors import GatewayError
from service.jsreplicas import apply_replicas, create_replicated, object_stream

# Room left for headers and protocol framing: headers count against max_payload, and a
# message above it makes the server close the connection.
HEADROOM = 64 * 1024


class PayloadStore:
    def __init__(self, nc: Client, replicas: int = 1) -> None:
        self._nc = nc
        self._replicas = replicas
        self._store: ObjectStore | None = None

    def fits(self, body: bytes) -> bool:
        return len(body) + HEADROOM <= self._nc.max_payload

    async def bucket(self) -> ObjectStore:
        if self._store is None:
            js = self._nc.jetstream()
            try:  # bind to the bucket when it exists (whoever created it), else create it
                self._store = await js.object_store(PAYLOAD_BUCKET)
            except NotFoundError:
                def create(replicas: int):
                    return js.create_object_store(PAYLOAD_BUCKET, ObjectStoreConfig(
                        ttl=PAYLOAD_TTL_S, replicas=replicas, description=PAYLOAD_BUCKET_DESCRIPTION))

                self._store = await create_replicated(create, self._replicas, f"object store {PAYLOAD_BUCKET}")
            else:
                await apply_replicas(js, object_stream(PAYLOAD_BUCKET), self._replicas)
        return self._store

    async def put(self, body: bytes) -> str:
        name = uuid.uuid4().hex
        await (await self.bucket()).put(name, body)
        return name

    async def take(self, name: str) -> bytes:
        store = await self.bucket()
        try:
            result = await store.get(name)
        except NotFoundError:
            raise GatewayError(f"No payload named {name!r} in {PAYLOAD_BUCKET} (expired after "
                               f"{PAYLOAD_TTL_S:g}s, or already used)", ErrorCategory.validation,
                               reason=Reason.PAYLOAD_NOT_FOUND) from None
        await store.delete(name)
        return result.data or b""
