"""Jobs: commands queued durably in JetStream and run without a waiting caller (docs/JOBS.md)."""
