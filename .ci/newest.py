"""For .ci/run's report on the newest releases (Python 3.11 or newer: tomllib; and `packaging`,
which .ci/run installs first).

`newest.py requirements`: every dependency pyproject.toml names (the service's and the `dev`
extra's), with its version bounds dropped and its extras and markers kept, one a line, for
`pip install --upgrade -r`: the newest release of each, past the caps pyproject.toml sets.
`newest.py versions`: the release of each that is installed, beside the one requirements.lock
names.
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def requirements() -> list[tuple[str, str]]:
    """(name, the requirement without its version bounds), for the project and its dev extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = []
    for line in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        requirement = Requirement(line)
        requirement.specifier = type(requirement.specifier)()  # no bounds: the newest release
        found.append((requirement.name, str(requirement)))
    return found


def locked() -> dict[str, str]:
    """The release requirements.lock names for each package (pip's constraints format)."""
    pinned = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            pinned[canonicalize_name(requirement.name)] = str(requirement.specifier).removeprefix("==")
    return pinned


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
        lock = pinned.get(canonicalize_name(name), "?")
        print(f"  {name}=={got}" + ("" if got == lock else f"  (requirements.lock: {lock})"))


if __name__ == "__main__":
    main(sys.argv[1])
