"""FastStream subscribers: decode a bus message, call the service, encode the reply. Thin."""
