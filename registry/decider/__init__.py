"""The write path: the decider (the single writer of ``registry.events``) and its client.

``Decider`` consumes ``registry.commands``, decides with ``registry.core.rules``, appends
the events and replies on ``registry.replies``; ``CommandClient`` sends a command and awaits
that reply. See docs/design.md#the-write-path and docs/write-path.md.
"""
