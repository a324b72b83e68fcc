"""LLM providers: one capability table, small pure adapters, and the upstream error classifier."""
