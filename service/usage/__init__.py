"""The usage pipeline: usage events to JetStream, a durable consumer that writes them to the
store (SQLite or PostgreSQL), and the queries behind the usage endpoints (docs/USAGE.md)."""
