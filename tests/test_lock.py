"""requirements.lock pins every package pyproject.toml asks for, at a release it allows, on every
Python the service supports, and this environment was installed from it. Refreshing the lock
needs the network: scripts/lock (README, "Dependencies")."""

from __future__ import annotations

import sys
from importlib.metadata import version

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


def environment(python: str) -> dict[str, str]:
    return {"python_version": python, "python_full_version": f"{python}.0", "extra": ""}


def asked() -> list[Requirement]:
    """What pyproject.toml asks for: the service's dependencies and the tests' (extra dev)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


def pinned(python: str) -> dict[str, str]:
    """The lock's release of each package on this Python (markers decide which lines apply)."""
    out: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate(environment(python)):
            continue
        (spec,) = requirement.specifier
        assert spec.operator == "==", line
        name = canonicalize_name(requirement.name)
        assert name not in out, f"{name} pinned twice for Python {python}"
        out[name] = spec.version
    return out


@pytest.mark.parametrize("python", PYTHONS)
def test_the_lock_pins_what_pyproject_asks_for(python: str) -> None:
    releases = pinned(python)
    for requirement in asked():
        if requirement.marker is not None and not requirement.marker.evaluate(environment(python)):
            continue
        name = canonicalize_name(requirement.name)
        assert name in releases, f"{name} is not in requirements.lock for Python {python}: run scripts/lock"
        assert requirement.specifier.contains(releases[name], prereleases=True), (
            f"requirements.lock has {name}=={releases[name]}, which pyproject.toml does not allow "
            f"({requirement.specifier}): run scripts/lock"
        )


def test_this_environment_was_installed_from_the_lock() -> None:
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    releases = pinned(python)
    for requirement in asked():
        if requirement.marker is not None and not requirement.marker.evaluate(environment(python)):
            continue
        name = canonicalize_name(requirement.name)
        assert version(name) == releases[name], f"{name} {version(name)} is installed, the lock says {releases[name]}"
