"""For .ci/run's report on the newest releases (Python 3.11 or newer: tomllib).

`newest.py requirements`: every dependency pyproject.toml names (the service's and the `dev`
extra's), with its version bounds dropped and its extras and markers kept, one a line, for
`pip install --upgrade -r`: the newest release of each, past the caps pyproject.toml sets.
`newest.py versions`: the release of each that is installed, beside the one requirements.lock
names.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?")


def requirements() -> list[tuple[str, str]]:
    """(name, the requirement without its version bounds), for the project and its dev extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = []
    for line in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        match = _NAME.match(line)
        assert match is not None, line
        name, extras = match[1], match[2] or ""
        marker = line.split(";", 1)[1].strip() if ";" in line else ""
        found.append((name, f"{name}{extras}" + (f"; {marker}" if marker else "")))
    return found


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    lock = (ROOT / "requirements.lock").read_text()
    return {_normal(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", lock, re.M)}


def main(what: str) -> None:
    if what == "requirements":
        print("\n".join(requirement for _, requirement in requirements()))
        return
    pinned = locked()
    for name, _ in requirements():
        try:
            got = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # its marker excludes this Python
        lock = pinned.get(_normal(name), "?")
        print(f"  {name}=={got}" + ("" if got == lock else f"  (requirements.lock: {lock})"))


if __name__ == "__main__":
    main(sys.argv[1])
