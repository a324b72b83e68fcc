"""OpenAI-compatible providers declared by configuration instead of code.

Three sources, read once at start-up, later ones replacing earlier ones by name:

1. the packaged presets (`presets.yaml` beside this file) named in INTEGRATIONS_PROVIDER_PRESETS;
2. the providers file at INTEGRATIONS_PROVIDERS_FILE (YAML, TOML or JSON, by its suffix);
3. INTEGRATIONS_PROVIDERS, the same document as JSON.

Each entry becomes a row of the capability table with an `OpenAIAdapter`, so it is a first-class
provider for execute and for everything that reads the table. String values may reference the
environment as `${VAR}` or `${VAR:-default}`. A document that does not validate stops the
start-up with a `ProviderConfigError` that names the source, the provider and the field.
The format is documented in docs/PROVIDERS.md and providers.example.yaml.
"""

import json
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AliasChoices, AliasGenerator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_snake

from contracts.execute import ExecuteParams
from service.providers.base import NO_AUTH, AuthStyle, OperationKind, OperationSpec, ProviderSpec
from service.providers.models import ModelInfo
from service.providers.openai import OpenAIAdapter
from service.settings import Settings

PRESETS_FILE = Path(__file__).with_name("presets.yaml")

# Operations an OpenAI-compatible server can run, and what the gateway calls for each.
OPERATION_KINDS: dict[str, OperationKind] = {
    "chat.completions": "chat",
    "image.description": "vision",
    "text.generation": "generate",
    "embeddings": "embeddings",
    "responses": "responses",
}
_SUMMARIES = {
    "chat.completions": "Chat completion ({base}/chat/completions)",
    "image.description": "Describe an image (chat with image parts)",
    "text.generation": "Text generation (a prompt as one user message, chat API)",
    "embeddings": "Embeddings ({base}/embeddings)",
    "responses": "Responses API ({base}/responses)",
}
_STREAMING_KINDS = frozenset({"chat", "vision", "generate"})
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PARAM_NAMES = frozenset(ExecuteParams.model_fields)
_CAPABILITIES = Literal["chat", "completion", "embedding", "vision", "function_calling", "reasoning"]


class ProviderConfigError(ValueError):
    """A providers document that cannot be used; the message says where and why."""


def _aliases(field: str) -> AliasChoices:
    return AliasChoices(field, to_snake(field))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True,
                              alias_generator=AliasGenerator(validation_alias=_aliases))


class ModelEntry(_Strict):
    id: str = Field(min_length=1, max_length=256)
    name: str | None = None
    description: str | None = None
    capabilities: list[_CAPABILITIES] | None = None
    contextWindow: int | None = Field(None, gt=0)
    maxOutputTokens: int | None = Field(None, gt=0)
    # USD per 1M tokens; the original's ModelConfig spelling (inputPricing) is accepted too.
    inputPrice: float | None = Field(None, ge=0, validation_alias=AliasChoices(
        "inputPrice", "input_price", "inputPricing", "input_pricing"))
    outputPrice: float | None = Field(None, ge=0, validation_alias=AliasChoices(
        "outputPrice", "output_price", "outputPricing", "output_pricing"))
    deprecated: bool = False


class ProviderEntry(_Strict):
    name: str | None = None                      # taken from the mapping key when absent
    displayName: str | None = None
    description: str | None = None
    baseUrl: str
    auth: Literal["bearer", "header", "none"] = "bearer"
    authHeader: str | None = None                # auth: header (x-api-key, api-key...)
    authPrefix: str | None = None                # default "Bearer " for bearer, "" for header
    credentialEnv: str | list[str] | None = None  # default <NAME>_API_KEY
    credentialKey: str | None = None             # the credential's key in Identity (default: the name)
    headers: dict[str, str] = Field(default_factory=dict)
    operations: list[str] = Field(min_length=1)
    params: dict[str, list[str]] = Field(default_factory=dict)   # per operation: replaces the default set
    excludeParams: list[str] = Field(default_factory=list)       # removed from every operation's set
    maxTokensField: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    # Streams ask for usage with stream_options.include_usage; false for servers that reject the field.
    streamUsage: bool = True
    defaultModel: str | None = None
    models: list[ModelEntry] = Field(default_factory=list)
    healthUrl: str | None = None
    listModels: bool = False                     # GET {baseUrl}/models lists the models live
    override: bool = False                       # required to replace a built-in provider

    @field_validator("baseUrl", "healthUrl")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("operations")
    @classmethod
    def _known_operations(cls, value: list[str]) -> list[str]:
        unknown = [op for op in value if op not in OPERATION_KINDS]
        if unknown:
            raise ValueError(f"unknown operation(s) {', '.join(unknown)}; "
                             f"an OpenAI-compatible provider can run {', '.join(OPERATION_KINDS)}")
        return list(dict.fromkeys(value))


@dataclass(frozen=True, slots=True)
class ConfiguredProvider:
    spec: ProviderSpec
    models: tuple[ModelInfo, ...]
    override: bool
    origin: str                                   # where it was declared, for error messages


# --- reading the documents --------------------------------------------------------------------


def _interpolate(value: Any, env: Callable[[str], str | None], origin: str) -> Any:
    if isinstance(value, str):
        def sub(match: re.Match) -> str:
            found = env(match[1])
            if found is None and match[2] is None:
                raise ProviderConfigError(f"{origin}: ${{{match[1]}}} is not set (write ${{{match[1]}:-default}} "
                                          f"for a default)")
            return found if found is not None else match[2]
        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, env, origin) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, origin) for v in value]
    return value


def _parse_text(text: str, kind: str, origin: str) -> Any:
    try:
        if kind == "toml":
            return tomllib.loads(text)
        if kind == "json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ProviderConfigError(f"{origin}: not valid {kind.upper()}: {exc}") from None


def _entries(document: Any, origin: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, raw entry) pairs from `{providers: {name: entry}}`, `{providers: [entry]}`, or the
    bare mapping or list."""
    if document is None:
        return []
    if isinstance(document, dict) and set(document) <= {"providers"}:
        document = document.get("providers") or []
    if isinstance(document, dict):
        pairs = []
        for name, entry in document.items():
            if not isinstance(entry, dict):
                raise ProviderConfigError(f"{origin}: provider {name!r} must be a mapping of settings")
            pairs.append((str(name), {**entry, "name": entry.get("name", name)}))
        return pairs
    if isinstance(document, list):
        pairs = []
        for i, entry in enumerate(document):
            if not isinstance(entry, dict) or not entry.get("name"):
                raise ProviderConfigError(f"{origin}: providers[{i}] must be a mapping with a name")
            pairs.append((str(entry["name"]), entry))
        return pairs
    raise ProviderConfigError(f"{origin}: expected a `providers` mapping or list")


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:6]:
        path = ".".join(str(p) for p in err["loc"])
        parts.append(f"{path}: {err['msg']}" if path else err["msg"])
    return "; ".join(parts)


# --- from an entry to a capability-table row --------------------------------------------------


def _operation_params(name: str, entry: ProviderEntry, defaults: dict[OperationKind, frozenset[str]],
                      origin: str) -> dict[str, frozenset[str]]:
    declared = [*entry.excludeParams, *(p for ps in entry.params.values() for p in ps)]
    unknown = sorted(set(declared) - _PARAM_NAMES)
    if unknown:
        raise ProviderConfigError(f"{origin}: provider {name!r}: unknown parameter(s) {', '.join(unknown)}; "
                                  f"execute parameters are {', '.join(sorted(_PARAM_NAMES))}")
    stray = sorted(set(entry.params) - set(entry.operations))
    if stray:
        raise ProviderConfigError(f"{origin}: provider {name!r}: params given for operation(s) it does not "
                                  f"declare: {', '.join(stray)}")
    out = {}
    for op in entry.operations:
        chosen = frozenset(entry.params[op]) if op in entry.params else defaults[OPERATION_KINDS[op]]
        out[op] = (chosen - frozenset(entry.excludeParams)) | {"model"}
    return out


def _auth(name: str, entry: ProviderEntry, origin: str) -> AuthStyle:
    if entry.auth == "none":
        return NO_AUTH
    if entry.auth == "header":
        if not entry.authHeader:
            raise ProviderConfigError(f"{origin}: provider {name!r}: auth: header needs authHeader "
                                      f"(the header that carries the key, e.g. x-api-key)")
        return AuthStyle("header", entry.authHeader.lower(), entry.authPrefix or "")
    return AuthStyle("bearer", (entry.authHeader or "authorization").lower(),
                     "Bearer " if entry.authPrefix is None else entry.authPrefix)


def _model_infos(name: str, entry: ProviderEntry) -> tuple[ModelInfo, ...]:
    embedding_only = set(entry.operations) == {"embeddings"}
    default_caps = ("embedding",) if embedding_only else ("chat",)
    return tuple(
        ModelInfo(id=m.id, name=m.name or m.id, provider=name,
                  capabilities=tuple(m.capabilities) if m.capabilities else default_caps,
                  context_window=m.contextWindow, max_output_tokens=m.maxOutputTokens,
                  input_price=m.inputPrice, output_price=m.outputPrice, deprecated=m.deprecated,
                  description=m.description)
        for m in entry.models
    )


def build_configured(raw: dict[str, Any], *, source: Literal["preset", "config"], origin: str,
                     defaults: dict[OperationKind, frozenset[str]]) -> ConfiguredProvider:
    name = str(raw.get("name", ""))
    if not _NAME.match(name):
        raise ProviderConfigError(f"{origin}: provider name {name!r} must be 1-64 lowercase letters, digits, "
                                  f"'.', '_' or '-', starting with a letter or digit")
    try:
        entry = ProviderEntry.model_validate(raw)
    except ValidationError as exc:
        raise ProviderConfigError(f"{origin}: provider {name!r}: {_describe(exc)}") from None
    auth = _auth(name, entry, origin)
    params = _operation_params(name, entry, defaults, origin)
    env_names = entry.credentialEnv if isinstance(entry.credentialEnv, list) else (
        [entry.credentialEnv] if entry.credentialEnv else [re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_API_KEY"])
    # `developer` is OpenAI's newer name for `system`; most compatible servers only know `system`.
    adapter = OpenAIAdapter(entry.baseUrl, name=name, auth=auth, headers=entry.headers,
                            max_tokens_field=entry.maxTokensField, developer_as_system=True,
                            stream_usage=entry.streamUsage)
    models = _model_infos(name, entry)
    spec = ProviderSpec(
        name=name,
        display_name=entry.displayName or name,
        description=entry.description or f"{name} (OpenAI-compatible, {entry.baseUrl})",
        # Every operation on the chat API streams (OpenAI SSE); embeddings and responses do not.
        operations={op: OperationSpec(name=op, kind=OPERATION_KINDS[op], params=params[op],
                                      summary=_SUMMARIES[op].format(base=entry.baseUrl),
                                      streaming=OPERATION_KINDS[op] in _STREAMING_KINDS)
                    for op in entry.operations},
        adapter=adapter,
        base_url=entry.baseUrl,
        credential_env=tuple(env_names) if auth.kind != "none" else (),
        needs_credential=auth.kind != "none",
        default_model=entry.defaultModel or (models[0].id if models else ""),
        credential_key=entry.credentialKey or "",
        source=source,
        health_url=entry.healthUrl,
        models_url=f"{entry.baseUrl}/models" if entry.listModels else None,
    )
    return ConfiguredProvider(spec, models, entry.override, origin)


# --- the three sources ------------------------------------------------------------------------


def _selected_presets(setting: str, available: Iterable[str]) -> list[str]:
    available = list(available)
    wanted = [n.strip() for n in setting.split(",") if n.strip()]
    if wanted in ([], ["none"]):
        return []
    if wanted == ["all"]:
        return available
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise ProviderConfigError(f"INTEGRATIONS_PROVIDER_PRESETS: unknown preset(s) {', '.join(unknown)}; "
                                  f"presets are {', '.join(available)} (or all, none)")
    return wanted


def load_configured(settings: Settings, defaults: dict[OperationKind, frozenset[str]]) -> list[ConfiguredProvider]:
    """Every configured provider, in declaration order; a later source replaces an earlier one
    of the same name (keeping its position). Raises ProviderConfigError on anything invalid."""
    documents: list[tuple[Literal["preset", "config"], str, Any]] = []
    presets = _entries(_parse_text(PRESETS_FILE.read_text(), "yaml", "presets"), "presets")
    chosen = set(_selected_presets(settings.provider_presets, [name for name, _ in presets]))
    documents.append(("preset", "preset", {"providers": [e for n, e in presets if n in chosen]}))
    if settings.providers_file is not None:
        path = Path(settings.providers_file)
        origin = f"providers file {path}"
        try:
            text = path.read_text()
        except OSError as exc:
            raise ProviderConfigError(f"{origin}: cannot be read: {exc.strerror}") from None
        kind = {".toml": "toml", ".json": "json"}.get(path.suffix.lower(), "yaml")
        documents.append(("config", origin, _parse_text(text, kind, origin)))
    if settings.providers_json:
        documents.append(("config", "INTEGRATIONS_PROVIDERS",
                          _parse_text(settings.providers_json, "json", "INTEGRATIONS_PROVIDERS")))

    found: dict[str, ConfiguredProvider] = {}
    for source, origin, document in documents:
        seen: set[str] = set()
        for name, raw in _entries(document, origin):
            if name in seen:
                raise ProviderConfigError(f"{origin}: provider {name!r} is declared twice")
            seen.add(name)
            found[name] = build_configured(_interpolate(raw, settings.env, f"{origin}: provider {name!r}"),
                                           source=source, origin=origin, defaults=defaults)
    return list(found.values())


def check_provider_config(settings: Settings) -> str | None:
    """For process start-up: None when the configured providers load, else the message to print."""
    from service.providers.capabilities import build_provider_table

    try:
        build_provider_table(settings)
    except ProviderConfigError as exc:
        return f"Invalid provider configuration: {exc}"
    return None
