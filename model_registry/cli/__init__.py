"""The ``model-registry`` command line: every command, in this one package.

``main`` (in ``main.py``) is the entry point; the commands live by topic: ``writes`` (the
decider, ``models register|status|...``, ``ab start|traffic|stop``), ``reads`` (the
projector, reads of the projection, ``projections``, ``audit``), ``predict`` (the prediction
consumer, ``predict``), ``monitor`` (the monitor, ``ab report``), ``up`` (``up``, ``demo``).
``common`` holds what they share; ``model_registry.render`` the human output.
"""
