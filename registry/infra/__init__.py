"""Infrastructure: settings, Kafka plumbing, the log follower, the journal, health, logging.

Imports only ``registry.core`` among the project's packages; the write path, the
projections, the consumers and the application build on it (docs/design.md#layers).
"""
