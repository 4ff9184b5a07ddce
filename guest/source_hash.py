"""The hash of the guest's sources, recorded next to the built module.

`build.sh` writes it after a build; the test suite recomputes it and fails when the sources
changed but the committed module was not rebuilt.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

GUEST = Path(__file__).resolve().parent


def source_files() -> list[Path]:
    files = [GUEST / "Cargo.toml", GUEST / "build.sh", GUEST / "wasm_names.py", *GUEST.glob("src/**/*.rs")]
    return sorted(files, key=lambda p: p.relative_to(GUEST).as_posix())


def source_hash() -> str:
    digest = hashlib.sha256()
    for path in source_files():
        digest.update(path.relative_to(GUEST).as_posix().encode() + b"\0")
        # Line endings are normalised so a checkout with CRLF hashes the same.
        digest.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return digest.hexdigest()


if __name__ == "__main__":
    sys.stdout.write(source_hash() + "\n")
