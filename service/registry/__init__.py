"""The integration registry: OpenAPI and MCP integrations, org-scoped, persisted in JetStream."""
