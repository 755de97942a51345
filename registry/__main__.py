"""``python -m registry``: the ``model-registry`` command line."""

from registry.app.cli.main import main

main()
