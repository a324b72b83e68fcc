"""A registry read that JetStream does not answer in time (a NATS cluster electing a leader) is a
retryable 503, not a 500."""

from types import SimpleNamespace

import nats.errors
import pytest

from service.errors import GatewayError
from service.registry.store import RegistryStore


async def test_an_object_store_timeout_is_a_retryable_503():
    class SlowObjects:
        async def get(self, _name):
            raise nats.errors.TimeoutError

    store = RegistryStore()
    store._objects = SlowObjects()
    with pytest.raises(GatewayError) as caught:
        await store.operations(SimpleNamespace(doc="ops-1", key="pets"))
    assert caught.value.status == 503 and caught.value.retryable is True
