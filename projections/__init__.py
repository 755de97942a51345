"""Read side: SQLite projections of ``registry.events``, rebuild, queries and audit replay.

- ``Projector`` keeps ``<data dir>/projection.db`` up to date (one transaction per batch,
  with its position); ``rebuild`` replays from offset 0 and swaps the result in atomically;
  ``restore_log`` puts the stored log back into an empty topic (embedded broker restarts).
- ``ProjectionReader`` answers ``get_model`` (also as of a time or offset), ``list_models``,
  ``list_versions``, ``status_history``, ``list_ab_tests`` and ``wait_for_offset``.
- ``replay`` reads the log for audit, by offset or time range, filtered.
"""

from projections.audit import AuditEntry, replay
from projections.errors import (
    ProjectionError,
    ProjectionHistoryMismatch,
    ProjectionLagError,
    ProjectionReplaced,
    ProjectionUnavailable,
    RestoreRefused,
)
from projections.projector import Projector, ProjectorStats, RebuildResult, rebuild
from projections.reader import ProjectionReader
from projections.restore import restore_log
from projections.schema import SCHEMA_VERSION, projection_path
from projections.views import ABTestView, ModelView, SplitView, StatusChange, VersionView

__all__ = [
    "ABTestView",
    "AuditEntry",
    "ModelView",
    "ProjectionError",
    "ProjectionHistoryMismatch",
    "ProjectionLagError",
    "ProjectionReader",
    "ProjectionReplaced",
    "ProjectionUnavailable",
    "Projector",
    "ProjectorStats",
    "RebuildResult",
    "RestoreRefused",
    "SCHEMA_VERSION",
    "SplitView",
    "StatusChange",
    "VersionView",
    "projection_path",
    "rebuild",
    "replay",
    "restore_log",
]
