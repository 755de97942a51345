"""The registry's own layers, bottom first (docs/design.md#layers).

- ``registry.core``: value types, messages, the rules and the one fold, the codec (no I/O);
- ``registry.infra``: settings, Kafka plumbing and the log follower, journal, health;
- ``registry.decider``: the write path (the decider and ``CommandClient``).

The read side (``projections``) and the prediction path (``consumers``) build on these; the
composition root (``model_registry``: the Python API, the ``up`` stack, the CLI) on all.
"""
