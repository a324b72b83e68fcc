"""The HTTP adapter: each documented route becomes one request on the bus. It forwards bytes
and status and never imports provider code (checked by import-linter)."""
