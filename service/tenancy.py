"""Who may call and with which provider keys: builds `Access` and the credential resolver for
the configured mode (docs/IDENTITY.md).

* Identity mode (IDENTITY_SERVICE_URL set): Identity's users, agents and API keys, plus the
  operator's local keys; provider keys from Identity, then the credentials file and the
  gateway's environment if configured. An org must be named or come from the caller.
* Local mode (default): local API keys and optional JWTs; provider keys from the credentials
  file and the environment. Callers that name no org act in INTEGRATIONS_DEFAULT_ORG.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from service.auth.access import Access
from service.auth.identity import IdentityAuthenticator
from service.auth.jwt_tokens import JwtVerifier
from service.auth.keys import KeyStore
from service.auth.local import LocalAuthenticator
from service.cache import TTLCache
from service.credentials import ChainCredentials, CredentialResolver, EnvCredentials, FileCredentials
from service.identity.client import IdentityClient
from service.identity.credentials import IdentityCredentials
from service.providers.base import ProviderSpec
from service.settings import Settings
from service.transport import UpstreamTransport


@dataclass(slots=True)
class Tenancy:
    access: Access
    credentials: CredentialResolver
    identity: IdentityClient | None = None          # round-trip counter for measurements
    auth_cache: TTLCache | None = None
    credential_cache: TTLCache | None = None


def build_tenancy(settings: Settings, providers: Mapping[str, ProviderSpec], transport: UpstreamTransport,
                  key_store: KeyStore) -> Tenancy:
    jwt = None
    if settings.jwt_secret or settings.jwt_jwks_url:
        jwt = JwtVerifier(
            secret=settings.jwt_secret, jwks_url=settings.jwt_jwks_url, audience=settings.jwt_audience,
            issuer=settings.jwt_issuer, leeway_s=settings.jwt_leeway_s, default_org=settings.default_org,
            transport=transport, timeout_s=settings.identity_timeout_s, jwks_ttl_s=settings.jwt_jwks_ttl_s)
    local = LocalAuthenticator(settings.configured_api_keys, key_store, jwt)

    local_keys: list[CredentialResolver] = []
    if settings.credentials_file:
        local_keys.append(FileCredentials(settings.credentials_file))
    local_keys.append(EnvCredentials(
        env_provider_keys(settings, providers),
        {name: spec.credential_env for name, spec in providers.items()},
    ))

    if not settings.identity_mode:
        return Tenancy(Access(local, settings.default_org), ChainCredentials(local_keys))

    assert settings.identity_service_url
    client = IdentityClient(settings.identity_service_url, transport, settings.identity_timeout_s)
    auth_cache: TTLCache = TTLCache(settings.cache_max_entries)
    credential_cache: TTLCache = TTLCache(settings.cache_max_entries)
    authenticator = IdentityAuthenticator(client, auth_cache, positive_ttl_s=settings.auth_cache_ttl_s,
                                          negative_ttl_s=settings.auth_negative_cache_ttl_s, local=local)
    identity_keys = IdentityCredentials(client, credential_cache, service_token=settings.service_token,
                                        positive_ttl_s=settings.credential_cache_ttl_s,
                                        negative_ttl_s=settings.credential_negative_cache_ttl_s)
    return Tenancy(Access(authenticator, None), ChainCredentials([identity_keys, *local_keys]), client,
                   auth_cache, credential_cache)


def env_provider_keys(settings: Settings, providers: Mapping[str, ProviderSpec]) -> dict[str, str | None]:
    """Local mode: each provider's key from its settings field (built-ins) or from the first set
    variable of its credential_env (configured providers), keyed as the resolver is asked."""
    from_settings = {"openai": settings.openai_api_key, "huggingface": settings.huggingface_api_key,
                     "anthropic": settings.anthropic_api_key}
    keys: dict[str, str | None] = {}
    for name, spec in providers.items():
        if not spec.needs_credential:
            continue
        if spec.source == "builtin":
            key = from_settings.get(name)
        else:
            key = next((v for v in map(settings.env, spec.credential_env) if v), None)
        if key or spec.identity_key not in keys:
            keys[spec.identity_key] = key
    return keys
