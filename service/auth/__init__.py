"""Who is calling, and in which organization. Local mode (API keys) lives here; the Identity
service plugs in behind the same `Authenticator` protocol."""
