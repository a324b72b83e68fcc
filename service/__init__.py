"""The domain of Symbia Integrations: providers, auth, credentials, resilience, settings, CLI."""

__version__ = "0.1.0"
