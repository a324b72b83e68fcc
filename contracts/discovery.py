"""Discovery: which providers, operations and models the gateway offers, and to whom.

Subjects `integrations.v1.providers.*`, `.models.list`, `.capabilities`, `.status`, `.stats`
behind the original's GET routes (reference §5). Each request is the JSON object of the route's
path and query parameters (an empty body counts as `{}`; unknown query parameters are ignored,
as HTTP servers do). Replies keep the original's field names and order: `/capabilities` is the
control center's system of record and the assistants read `providers[].provider/status/defaultModel`.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts import subjects
from contracts.http import API_PREFIX, QueryParam, Route

# --- requests (path + query parameters) ------------------------------------------------------


class _Query(BaseModel):
    model_config = ConfigDict(extra="ignore")


class NoParams(_Query):
    """Routes without parameters: any JSON object (or an empty body)."""


class ProviderRef(_Query):
    provider: str = Field(min_length=1, max_length=64)


class ProviderModelsQuery(ProviderRef):
    capability: str | None = Field(None, max_length=256,
                                   description="comma-separated; keeps models having any of them")


class ModelsQuery(_Query):
    capability: str | None = Field(None, max_length=256, description="comma-separated; wins over purpose")
    purpose: str | None = Field(None, max_length=64, description="chat|llm, embedding|embeddings, vision")


# --- replies ---------------------------------------------------------------------------------

class ModelConfig(BaseModel):
    """A model (reference §5.2). Prices are USD per million tokens; absent fields are omitted.
    Capabilities: chat, completion, embedding, vision, function_calling, reasoning."""

    id: str
    name: str
    description: str | None = None
    contextWindow: int | None = None
    maxOutputTokens: int | None = None
    capabilities: list[str]
    inputPricing: float | None = None
    outputPricing: float | None = None
    deprecated: bool | None = None


class ProviderModel(ModelConfig):
    provider: str


class ProviderSummary(BaseModel):
    name: str
    baseUrl: str
    defaultModel: str
    supportedOperations: list[str]


class ProvidersList(BaseModel):
    providers: list[ProviderSummary]


class ProviderConfig(BaseModel):
    """The provider's configuration: the Catalog resource's `metadata` (endpoints, authType,
    rateLimits, ... kept as Catalog sent them) or the built-in default."""

    model_config = ConfigDict(extra="allow")

    provider: str
    baseUrl: str
    defaultModel: str
    supportedOperations: list[str]


class ModelsList(BaseModel):
    models: list[ModelConfig]


class AllModels(BaseModel):
    models: dict[str, list[ProviderModel]] = Field(description="per provider; providers without models omitted")
    all: list[ProviderModel]


class ProviderAccess(BaseModel):
    hasCredential: bool
    credentialSource: Literal["personal", "org-wide", "service", "env", "none"]
    isEnabled: bool
    lastUsedAt: str | None


class ProviderCapability(BaseModel):
    provider: str
    name: str = Field(description="the provider id with its first letter upper-cased, as the original")
    displayName: str
    description: str
    baseUrl: str
    defaultModel: str
    supportedOperations: list[str]
    models: list[ModelConfig]
    access: ProviderAccess
    rateLimits: dict[str, int] | None = None
    status: Literal["available", "degraded", "unavailable"]
    statusMessage: str | None = None


class PurposeEntry(BaseModel):
    provider: str
    model: ModelConfig


class ModelsByPurpose(BaseModel):
    chat: list[PurposeEntry]
    embedding: list[PurposeEntry]
    vision: list[PurposeEntry]
    reasoning: list[PurposeEntry]


class CapabilityDefaults(BaseModel):
    chatProvider: str
    chatModel: str
    embeddingProvider: str
    embeddingModel: str


class CapabilitiesResponse(BaseModel):
    providers: list[ProviderCapability]
    byProvider: dict[str, ProviderCapability]
    modelsByPurpose: ModelsByPurpose
    defaults: CapabilityDefaults
    fetchedAt: str


class ProviderRegistration(BaseModel):
    name: str
    registered: bool
    credential: Literal["not_checked"]
    configured: bool


class BreakerStatus(BaseModel):
    state: Literal["closed", "open", "half_open"]
    failures: int
    lastFailure: str


class StatusResponse(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    providers: list[ProviderRegistration]
    note: str
    circuitBreaker: dict[str, BreakerStatus]


class StatsResponse(BaseModel):
    totalProviders: int
    configuredProviders: int
    totalIntegrations: int


ROUTES = (
    Route(method="GET", path=f"{API_PREFIX}/providers", subject=subjects.PROVIDERS_LIST, tag="providers",
          summary="List the providers the gateway can call", auth=False,
          request_model=NoParams, response_model=ProvidersList, error_statuses=(500, 503)),
    Route(method="GET", path=f"{API_PREFIX}/providers/{{provider}}", subject=subjects.PROVIDERS_GET,
          tag="providers", summary="One provider's configuration", auth=False,
          request_model=ProviderRef, response_model=ProviderConfig, error_statuses=(404, 500, 503)),
    Route(method="GET", path=f"{API_PREFIX}/providers/{{provider}}/models", subject=subjects.PROVIDERS_MODELS,
          tag="providers", summary="Models of one provider (listed with the caller's key when the provider can)",
          request_model=ProviderModelsQuery, response_model=ModelsList,
          query=(QueryParam("capability", "comma-separated capabilities; keeps models having any of them"),),
          error_statuses=(400, 401, 403, 404, 500, 503)),
    Route(method="GET", path=f"{API_PREFIX}/models", subject=subjects.MODELS_LIST, tag="providers",
          summary="Models of every provider, optionally filtered by capability or purpose",
          request_model=ModelsQuery, response_model=AllModels,
          query=(QueryParam("capability", "comma-separated capabilities (wins over purpose)"),
                 QueryParam("purpose", "chat|llm, embedding|embeddings or vision")),
          error_statuses=(400, 401, 403, 500, 503)),
    Route(method="GET", path=f"{API_PREFIX}/capabilities", subject=subjects.CAPABILITIES, tag="providers",
          summary="Credential-aware catalogue of providers and models for the caller's organization",
          description="The UI's system of record: per provider its operations, models, whether the caller has a "
                      "credential (and whose), and a status reflecting credentials and the circuit breaker.",
          request_model=NoParams, response_model=CapabilitiesResponse, error_statuses=(401, 403, 500, 503)),
    Route(method="GET", path=f"{API_PREFIX}/status", subject=subjects.STATUS, tag="health",
          summary="Registered providers and circuit-breaker states (no credentials checked)", auth=False,
          request_model=NoParams, response_model=StatusResponse, error_statuses=(500, 503)),
    Route(method="GET", path="/api/stats", subject=subjects.STATS, tag="health",
          summary="Counts of providers and integrations (polled by the control center)", auth=False,
          request_model=NoParams, response_model=StatsResponse, error_statuses=(500, 503)),
)
