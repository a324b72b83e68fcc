"""Resilience shared by every worker (docs/RESILIENCE.md): circuit breakers, rate limits, retries,
fallbacks and deadlines. State that must hold across replicas lives in NATS KV buckets; each
worker keeps what it may safely keep in memory (watched breaker states, leased tokens)."""
