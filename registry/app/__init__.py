"""The composition root: what assembles the layers below into programs.

``client.ModelRegistry`` (the Python API: writes through the decider, reads from the
projection), ``stack.Stack`` (everything in one process, for ``model-registry up``), the
demo, the JSON Schema export and the whole command line (``cli``). Nothing below imports
this package (docs/design.md#layers).
"""
