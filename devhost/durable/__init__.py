"""The durable engine: SQLite-backed histories replayed through the Durable SDK's own orchestrator handle."""
