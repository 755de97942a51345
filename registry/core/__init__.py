"""The core: value types, messages, the rules and the one fold, the codec. No I/O here.

Nothing in this package reads a file, a socket, a clock it was not handed or the
environment; every other layer builds on it (``pyproject.toml`` holds the import-linter
contracts that keep it so). See ``docs/design.md#layers``.

- ``types``: the spec's ``ModelConfig`` made strict, and its parts;
- ``messages``: commands, events and replies (each declared once, registered by type);
- ``predictions``: the prediction wire contract (requests, results, outcomes);
- ``state``: ``ModelState``/``RegistryState`` and ``evolve``, the one fold of the events;
- ``rules``: ``decide``, what a command causes;
- ``fastcheck`` and ``codec``: bytes <-> messages and checked facts;
- ``replay``: folding records of the log, with one policy for those that cannot be folded;
- ``errors``: the error tree every package's errors hang from.
"""
