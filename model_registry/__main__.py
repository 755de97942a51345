"""``python -m model_registry``: the ``model-registry`` command line."""

from model_registry.cli.main import main

main()
