"""Errors of the read side, under the registry's one root.

::

    RegistryError
     └── ProjectionError              something about the SQLite projection
          ├── ProjectionLagError       the projection has not reached an offset in time
          ├── ProjectionUnavailable    no projection file (or no schema) at the path yet
          ├── ProjectionHistoryMismatch the log is not the one the projection was built from
          ├── ProjectionReplaced       the file changed under a projector (rebuild/other writer)
          └── RestoreRefused           the log cannot be restored into this topic

Each has a stable ``code``; messages say what to do next and never carry secret values.
"""

from __future__ import annotations

from registry.core.errors import RegistryError

__all__ = [
    "ProjectionError",
    "ProjectionHistoryMismatch",
    "ProjectionLagError",
    "ProjectionReplaced",
    "ProjectionUnavailable",
    "RestoreRefused",
]


class ProjectionError(RegistryError):
    """Root of the read side's errors."""

    code = "ProjectionError"


class ProjectionLagError(ProjectionError):
    """The projection did not apply ``offset`` of ``partition`` within the timeout.

    ``applied_up_to`` is the last offset it has applied there (-1: none), ``behind`` how many
    offsets it still lacks.
    """

    code = "ProjectionLag"

    def __init__(
        self, partition: int, offset: int, applied_up_to: int, timeout: float, detail: str = ""
    ) -> None:
        self.partition, self.offset, self.applied_up_to = partition, offset, applied_up_to
        self.behind = max(0, offset - applied_up_to)
        super().__init__(
            f"the projection has applied registry.events partition {partition} up to offset "
            f"{applied_up_to}, {self.behind} behind offset {offset} after {timeout:g}s"
            + (f" ({detail})" if detail else "")
            + "; is the projector running (`model-registry projector`)?"
        )


class ProjectionUnavailable(ProjectionError):
    """There is no usable projection at the path (not built yet, or not a projection)."""

    code = "ProjectionUnavailable"


class ProjectionHistoryMismatch(ProjectionError):
    """The projection was built from another history than the log now offers.

    Raised when the topic was recreated, the broker lost its data (a stored position beyond
    the high watermark, a stored event that differs from the log's) or the cluster id
    changed. The projector refuses to mix two histories until the projection is rebuilt.
    """

    code = "ProjectionHistoryMismatch"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"{reason}; the projection refuses to mix two histories. "
            "Rebuild it from the current log with `model-registry projections rebuild`."
        )


class ProjectionReplaced(ProjectionError):
    """The projection's positions changed under a running projector (a rebuild swapped
    the file in, or another projector wrote). The projector reloads and carries on."""

    code = "ProjectionReplaced"


class RestoreRefused(ProjectionError):
    """The stored log cannot be restored: the topic is not empty, or offsets came out different."""

    code = "RestoreRefused"
