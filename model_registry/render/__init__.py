"""Human output (rich): tables of the projection's reads and the A/B comparison report.

Used by the CLI and the demo; a separate package so that the demo does not depend on the CLI.
"""
