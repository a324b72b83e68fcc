"""What an adapter is: pure functions from the normalized request to the upstream request,
and from the upstream answer (or error) to the normalized response (or a GatewayError).
Transport, timeouts, credentials and error envelopes live outside adapters."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from contracts.execute import ExecuteParams
from service.errors import GatewayError

OperationKind = Literal["chat", "vision", "embeddings", "responses", "generate"]


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """A row of the capability table: one operation of one provider."""

    name: str
    kind: OperationKind
    params: frozenset[str]
    summary: str = ""


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    method: str
    url: str
    body: Any = None                     # JSON-encodable; None for no body
    headers: dict[str, str] = field(default_factory=dict)


class ProviderAdapter(Protocol):
    def build(self, op: OperationSpec, params: ExecuteParams, api_key: str | None) -> UpstreamCall: ...

    def parse(self, op: OperationSpec, params: ExecuteParams, payload: Any) -> dict[str, Any]: ...

    def error(
        self, op: OperationSpec, status: int, payload: Any, headers: Mapping[str, str]
    ) -> GatewayError: ...


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A provider: its operations, how it authenticates, and its adapter."""

    name: str
    display_name: str
    description: str
    operations: Mapping[str, OperationSpec]
    adapter: ProviderAdapter
    base_url: str
    credential_env: tuple[str, ...]      # env vars that hold its key in local mode
    needs_credential: bool = True
    default_model: str = ""


@runtime_checkable
class ModelLister(Protocol):
    """Optional adapter capability: list the models an account can use (`GET /models`).
    Providers without it are described by their static list in models.json."""

    def models_call(self, api_key: str | None) -> UpstreamCall: ...

    def parse_models(self, payload: Any) -> list[str]:
        """Model ids worth offering, newest first."""
        ...
