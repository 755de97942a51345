"""Event-sourced AI model registry."""
