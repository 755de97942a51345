"""The HTTP API and the web console (issue 16): ``create_app(settings)``.

Reads come from the projection and monitor databases; writes become signed commands, sent
by this service as a gateway for the authenticated actor (docs/security.md).
"""
