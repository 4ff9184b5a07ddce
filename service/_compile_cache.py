"""Compiled guest code kept on disk between starts, one file per module, engine and version.

Compiled code is native code: the cache directory must be as trusted as the service's own
files. Each file carries a hash of its contents, checked before the engine sees it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger("service.engine")

Module = TypeVar("Module")


def path(cache_dir: Path, engine: str, version: str, wasm: bytes) -> Path:
    """Where the compiled code of `wasm` by `engine` at `version` is kept."""
    key = hashlib.sha256(f"{engine} {version}\n".encode() + wasm).hexdigest()
    return cache_dir / f"{key}.{engine}"


def read(file: Path, deserialize: Callable[[bytes], Module]) -> Module | None:
    """The module kept in `file`, or None when there is none, or it is damaged or does not load."""
    try:
        stored = file.read_bytes()
    except OSError:
        return None
    digest, blob = stored[:32], stored[32:]
    if not blob or hashlib.sha256(blob).digest() != digest:
        return None
    try:
        module = deserialize(blob)
    except Exception as e:  # an engine error: the caller compiles afresh and replaces the file
        log.warning("ignoring the cached compiled module %s: %s", file, _first_line(e))
        return None
    log.info("guest module loaded compiled from %s", file)
    return module


def write(file: Path, serialize: Callable[[], bytes]) -> None:
    """Keeps compiled code in `file`, replacing it whole; a directory that cannot be written
    only means no cache."""
    try:
        file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = file.with_name(f"{file.name}.{os.getpid()}.tmp")
        compiled = serialize()
        temporary.write_bytes(hashlib.sha256(compiled).digest() + compiled)
        temporary.replace(file)
    except OSError as e:
        log.info("compiled guest module not cached (%s)", e)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
