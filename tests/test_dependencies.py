"""Dependencies: every runtime one bounded below its next major version, and the image
installing the exact versions of constraints.txt, which satisfy those bounds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def _pinned() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, separator, version = line.partition("==")
        assert separator, f"constraints.txt: {line!r} is not an exact pin (name==version)"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def test_every_runtime_dependency_has_an_upper_bound_below_its_next_major() -> None:
    for requirement in _runtime_requirements():
        lower = [s for s in requirement.specifier if s.operator == ">="]
        upper = [s for s in requirement.specifier if s.operator == "<"]
        assert lower and upper, f"{requirement}: needs both >= and <"
        floor, ceiling = Version(lower[0].version), Version(upper[0].version)
        # The bound lets in every release of the floor's major line, and nothing beyond.
        assert ceiling == Version(f"{floor.major + 1}"), f"{requirement}: < {floor.major + 1}"


def test_constraints_pin_every_runtime_dependency_within_its_bounds() -> None:
    pins = _pinned()
    for requirement in _runtime_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"constraints.txt does not pin {requirement.name}"
        assert SpecifierSet(str(requirement.specifier)).contains(pins[name]), (
            f"constraints.txt pins {name}=={pins[name]}, outside {requirement.specifier}"
        )


def test_the_image_installs_the_pinned_versions() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = re.search(r"^COPY (.*) \./$", dockerfile, re.MULTILINE)
    assert copied is not None and "constraints.txt" in copied.group(1).split()
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert installs, "the Dockerfile installs nothing"
    assert all("-c constraints.txt" in line for line in installs), installs
