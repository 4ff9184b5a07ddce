"""The hash of a guest's sources, recorded next to the built module.

`build.sh` writes it after a build; the test suite recomputes it and fails when the sources
changed but the committed module was not rebuilt. `source_hash.py` hashes the Rust guest
(guest/), `source_hash.py guest-as` the AssemblyScript one (guest-as/, built by its build.sh).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

GUEST = Path(__file__).resolve().parent
AS_GUEST = GUEST.parent / "guest-as"


def source_files(guest: Path = GUEST) -> list[Path]:
    guest = guest.resolve()
    if guest == AS_GUEST or (guest / "asconfig.json").exists():  # guest-as/, or a copy of it
        files = [guest / name for name in ("package.json", "package-lock.json", "asconfig.json", "build.sh")]
        # The AssemblyScript build takes its symbol map out with the Rust guest's script.
        files += [*guest.glob("assembly/**/*.ts"), GUEST / "wasm_names.py"]
    else:
        files = [guest / "Cargo.toml", guest / "build.sh", guest / "wasm_names.py", *guest.glob("src/**/*.rs")]
    return sorted(files, key=lambda p: _name(p, guest))


def _name(path: Path, guest: Path) -> str:
    return Path(os.path.relpath(path, guest)).as_posix()


def source_hash(guest: Path = GUEST) -> str:
    guest = guest.resolve()
    digest = hashlib.sha256()
    for path in source_files(guest):
        digest.update(_name(path, guest).encode() + b"\0")
        # Line endings are normalised so a checkout with CRLF hashes the same.
        digest.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return digest.hexdigest()


if __name__ == "__main__":
    where = GUEST.parent / sys.argv[1] if len(sys.argv) > 1 else GUEST
    sys.stdout.write(source_hash(where) + "\n")
