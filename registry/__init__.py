"""Event-sourced AI model registry (docs/design.md).

Where things are, bottom layer first:

- ``registry.core``: value types, messages, the rules and the one fold, the codec (no I/O);
- ``registry.infra``: settings, Kafka plumbing and the log follower, journal, health;
- ``registry.decider``: the write path (the decider and ``CommandClient``);
- ``projections`` and ``consumers`` (top-level packages): the read side, and the prediction
  path with the monitor;
- ``registry.app``: the composition root: ``ModelRegistry`` (``registry.app.client``), the
  stack behind ``model-registry up``, the demo, the schema export and the whole CLI.
"""
