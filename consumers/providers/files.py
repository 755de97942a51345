"""Model files: only from under the granted roots, only when they match the pinned digest.

A file-based model (scikit-learn, pytorch, tensorflow) names ``providerConfig.modelPath`` and
pins ``providerConfig.modelSha256`` (64 lowercase hex). :func:`pinned_model` checks the
setting's shape and that the path lies under a root of ``grants.model_roots`` (plus
``<data_dir>/models`` in the prediction consumer) when the provider is built;
:meth:`PinnedModel.read` and :meth:`PinnedModel.copy_tree`, when the model loads:

1. lexically: no ``..`` part, the absolute path under a root (nothing is touched before);
2. for real: links resolved, the path still under a root's real path;
3. the bytes are read once (the last part opened without following a link), their digest
   compared with the pin, and only those bytes are handed to the deserialiser: a file
   swapped after the check is never loaded.

A path outside the roots is refused with one message whether or not it exists. A relative
``modelPath`` is taken relative to each root in turn (the first that has it).

The digest of a file is the SHA-256 of its bytes (``sha256sum FILE``). The digest of a
directory (a TensorFlow SavedModel) is the SHA-256 of the ``sha256sum`` lines of its regular
files, ``<hex digest of the content>  <path relative to the directory>\\n``, sorted by the
UTF-8 bytes of the path; in a shell::

    (cd DIR && find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum

A directory holding a link, a special file, or a name with a newline or a backslash is
refused (such names would make the lines ambiguous); empty directories do not count.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from consumers.errors import ProviderConfigInvalid
from consumers.providers.base import ProviderSpec

__all__ = ["SHA256", "PinnedModel", "file_digest", "model_digest", "pinned_model", "tree_digest"]

SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def file_digest(path: str | Path) -> str:
    """The SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digest(path: str | Path) -> str:
    """The digest of a directory as defined above. Raises ``ValueError`` for a link, a
    special file or an ambiguous name inside it."""
    lines = [f"{hexdigest}  {rel}\n" for rel, hexdigest, _ in _walk(Path(path))]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def model_digest(path: str | Path) -> str:
    """The ``modelSha256`` of a model file or directory (what a model config pins)."""
    return tree_digest(path) if Path(path).is_dir() else file_digest(path)


def _walk(root: Path) -> Iterator[tuple[str, str, Path]]:
    """``(relative path, content digest, path)`` of each regular file, sorted by path bytes."""
    found: list[tuple[bytes, str, Path]] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = os.path.relpath(entry.path, root).replace(os.sep, "/")
                if "\n" in rel or "\\" in rel:
                    raise ValueError(f"a name in the model directory is ambiguous: {rel!r}")
                if entry.is_symlink():
                    raise ValueError(f"the model directory holds a link: {rel}")
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    found.append((rel.encode(), rel, Path(entry.path)))
                else:
                    raise ValueError(f"the model directory holds a special file: {rel}")
    for _, rel, path in sorted(found):
        yield rel, _read_digest(path)[1], path


def _read_nofollow(path: str | Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise IsADirectoryError(str(path))
        return f.read()


def _read_digest(path: Path) -> tuple[bytes, str]:
    data = _read_nofollow(path)
    return data, hashlib.sha256(data).hexdigest()


def _under(path: str, base: str) -> bool:
    return os.path.commonpath([path, base]) == base


@dataclass(frozen=True, slots=True)
class PinnedModel:
    """A model path that passed the lexical checks, its pinned digest, and the roots."""

    label: str
    name: str
    candidates: tuple[str, ...]
    sha256: str
    roots: tuple[str, ...]

    @property
    def outside(self) -> ProviderConfigInvalid:
        return ProviderConfigInvalid(
            f"{self.label}: providerConfig.modelPath is not under a granted model root "
            "(REGISTRY_GRANTS_MODEL_ROOTS)"
        )

    def locate(self) -> str:
        """The real path of the model, under a real root. Raises ``ProviderConfigInvalid``."""
        real_roots = [os.path.realpath(r) for r in self.roots]
        for candidate in self.candidates:
            real = os.path.realpath(candidate)
            if not any(_under(real, root) and real != root for root in real_roots):
                raise self.outside
            if os.path.lexists(real) or candidate == self.candidates[-1]:
                return real
        raise self.outside  # pragma: no cover - the loop returns on its last candidate

    def _mismatch(self) -> ProviderConfigInvalid:
        return ProviderConfigInvalid(
            f"{self.label}: {self.name} does not match providerConfig.modelSha256 "
            "(nothing was loaded)"
        )

    def _missing(self, exc: OSError) -> ProviderConfigInvalid:
        if isinstance(exc, FileNotFoundError):
            return ProviderConfigInvalid(f"{self.label}: model file {self.name} does not exist")
        return ProviderConfigInvalid(
            f"{self.label}: cannot read model file {self.name} ({type(exc).__name__})"
        )

    def is_dir(self) -> bool:
        """True when the model is a directory (a SavedModel)."""
        return os.path.isdir(self.locate())

    def read(self) -> bytes:
        """The file's bytes, when they match the pin. Raises ``ProviderConfigInvalid``."""
        real = self.locate()
        try:
            data, digest = _read_digest(Path(real))
        except OSError as exc:
            raise self._missing(exc) from None
        if not hmac.compare_digest(digest, self.sha256):
            raise self._mismatch()
        return data

    def copy_tree(self) -> Path:
        """A private copy of the model directory, made from the bytes that were hashed, when
        its digest matches the pin (the caller removes it). Raises ``ProviderConfigInvalid``."""
        real = self.locate()
        target = Path(tempfile.mkdtemp(prefix="model-"))
        lines: list[str] = []
        try:
            for rel, _, path in _walk(Path(real)):
                data, hexdigest = _read_digest(path)
                lines.append(f"{hexdigest}  {rel}\n")
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            digest = hashlib.sha256("".join(lines).encode()).hexdigest()
            if not hmac.compare_digest(digest, self.sha256):
                raise self._mismatch()
        except ValueError as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise ProviderConfigInvalid(f"{self.label}: {exc}") from None
        except OSError as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise self._missing(exc) from None
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        return target


def pinned_model(spec: ProviderSpec) -> PinnedModel:
    """The checked ``modelPath`` and ``modelSha256`` of ``spec`` (nothing read yet).

    Raises ``ProviderConfigInvalid``: a setting missing or malformed, no root granted, or
    the path outside every root (the same message whether or not it exists).
    """
    name: str = spec.setting("modelPath")
    sha: str | None = spec.setting("modelSha256", None)
    if sha is None or not SHA256.match(sha):
        raise ProviderConfigInvalid(
            f"{spec.label}: providerConfig.modelSha256 (the SHA-256 of the model file, "
            "64 lowercase hex) is required"
        )
    roots = tuple(os.path.abspath(r) for r in spec.grants.model_roots if str(r).strip())
    if not roots:
        raise ProviderConfigInvalid(
            f"{spec.label}: no model root is granted (REGISTRY_GRANTS_MODEL_ROOTS): "
            "model files cannot be loaded"
        )
    pinned = PinnedModel(spec.label, name, (), sha, roots)
    if not name or "\0" in name or ".." in Path(name).parts:
        raise pinned.outside
    if os.path.isabs(name):
        candidates: tuple[str, ...] = (os.path.normpath(name),)
    else:
        candidates = tuple(os.path.normpath(os.path.join(r, name)) for r in roots)
    for candidate in candidates:
        if not any(
            _under(candidate, r) and candidate != r
            for root in roots
            for r in (root, os.path.realpath(root))
        ):
            raise pinned.outside
    return PinnedModel(spec.label, name, candidates, sha, roots)
