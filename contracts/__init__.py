"""Wire contracts of Symbia Integrations: subjects, headers, messages, the error envelope.

Pydantic and the standard library only; no I/O. Everything a NATS or HTTP client needs to
talk to the gateway is defined here and documented in docs/CONTRACTS.md.
"""
