"""``ModelRegistry``: the async Python API of the spec (register, get_model, list_models,
update_status, unregister, clear) plus versions, metrics, config and A/B tests.

Writes go through ``CommandClient`` (``registry.decider.client``): a command on
``registry.commands``, answered once its event is appended. Reads go to the SQLite
projection; by default they first wait until the projection has applied this client's own
writes (read-your-writes).

Settings that name no broker (no ``KAFKA_BOOTSTRAP_SERVERS``) find a running
``model-registry up`` the way the CLI does: by the ``runtime.json`` it keeps in the data dir.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Self

from model_registry.runtime import find_running
from projections.reader import ProjectionReader
from projections.schema import projection_path
from projections.views import ModelView, StatusChange, VersionView
from registry.core.types import ModelType, Provider, Status
from registry.decider.client import CommandClient, WriteResult
from registry.infra.identity import Identity
from registry.infra.settings import Settings

__all__ = ["ModelRegistry", "WriteResult"]


class ModelRegistry(CommandClient):
    """Async client of the registry. Use as ``async with ModelRegistry(settings) as reg:``.

    Commands are signed with ``identity`` (default: the key in ``settings.identity_file``,
    which ``up`` creates for the local user) and sent in the name of ``actor`` (default: the
    identity's own; another only when the actors file lets the identity sign for it).

    Without a broker address in ``settings``, the client talks to the ``up`` running on
    ``settings.data_dir`` (when none runs, starting it raises ``SettingsError``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        actor: str | None = None,
        projection_path: Path | None = None,
        timeout: float = 10.0,
        identity: Identity | None = None,
    ) -> None:
        settings = find_running(settings) or settings
        super().__init__(settings, actor=actor, timeout=timeout, identity=identity)
        self._projection_path = projection_path or _default_projection(settings)
        self._reader: ProjectionReader | None = None

    async def __aenter__(self) -> Self:
        try:
            return await super().__aenter__()
        except BaseException:
            await self.close()  # what did start is stopped: nothing left unclosed
            raise

    async def close(self) -> None:
        await super().close()
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()

    async def _projection(self, consistent: bool) -> ProjectionReader:
        if self._reader is None:
            self._reader = ProjectionReader(self._projection_path)
            await self._reader.open()
        if consistent:
            for partition, offset in self.written.items():
                await self._reader.wait_for_offset(partition, offset, timeout=self.timeout)
        return self._reader

    async def get_model(
        self, model_id: str, *, as_of: datetime | int | None = None, consistent: bool = True
    ) -> ModelView | None:
        """The model's current view (or as of a time/offset), or None (spec ``getModel``)."""
        return await (await self._projection(consistent)).get_model(model_id, as_of=as_of)

    async def list_models(
        self,
        *,
        type: ModelType | str | None = None,  # noqa: A002 - the spec's name
        status: Status | str | None = None,
        provider: Provider | str | None = None,
        consistent: bool = True,
    ) -> list[ModelView]:
        """Models, optionally filtered (spec ``listModels``)."""
        reader = await self._projection(consistent)
        return await reader.list_models(type=type, status=status, provider=provider)

    async def list_versions(self, model_id: str, *, consistent: bool = True) -> list[VersionView]:
        """Every version ``model_id`` has carried."""
        return await (await self._projection(consistent)).list_versions(model_id)

    async def list_aliases(self, *, consistent: bool = True) -> list[tuple[str, str, str, str]]:
        """Every alias: (alias, model id, version, status). ``get_model`` takes an alias too."""
        return await (await self._projection(consistent)).list_aliases()

    async def status_history(self, model_id: str, *, consistent: bool = True) -> list[StatusChange]:
        """Every status transition of ``model_id``."""
        return await (await self._projection(consistent)).status_history(model_id)


def _default_projection(settings: Settings) -> Path:
    return projection_path(settings)
