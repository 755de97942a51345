"""Read side: SQLite projections of ``registry.events``, rebuild, queries and audit replay."""
