"""The lock files: they satisfy pyproject.toml, agree with each other, and are what gets
installed (README, CI, Dockerfile)."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts import lock, upgrade_deps

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def pins(path: Path) -> dict[str, str]:
    return {canonicalize_name(name): v for name, v in upgrade_deps.pins(path).items()}


def requirements(*, dev: bool) -> list[Requirement]:
    listed = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["build-system"]["requires"]]
    listed.append(lock.EDITABLE_BUILD)
    if dev:
        listed += PYPROJECT["project"]["optional-dependencies"]["dev"]
    return [Requirement(text) for text in listed]


@pytest.mark.parametrize(
    ("path", "dev"), [(lock.RUNTIME_LOCK, False), (lock.DEV_LOCK, True)], ids=["runtime", "dev"]
)
def test_every_requirement_is_pinned_within_its_bounds(path: Path, dev: bool) -> None:
    pinned = pins(path)
    for requirement in requirements(dev=dev):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is not in {path.name}: run python scripts/lock.py"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{path.name} pins {name}=={pinned[name]}, outside {requirement}: "
            "run python scripts/lock.py"
        )


def test_every_pin_has_hashes() -> None:
    for path in (lock.RUNTIME_LOCK, lock.DEV_LOCK):
        entries = re.split(r"\n(?=\S)", path.read_text(encoding="utf-8"))
        for entry in entries:
            if "==" in entry.split("\n", 1)[0] and not entry.startswith("#"):
                assert "--hash=sha256:" in entry, entry.split("\n", 1)[0]


def test_runtime_lock_agrees_with_the_dev_lock() -> None:
    runtime, dev = pins(lock.RUNTIME_LOCK), pins(lock.DEV_LOCK)
    assert runtime
    assert {name: dev.get(name) for name in runtime} == runtime


def test_this_environment_has_the_locked_versions() -> None:
    """The suite runs on what the lock says (CI installs from it into a fresh venv)."""
    wrong = {
        name: (pinned, version(name))
        for name, pinned in pins(lock.DEV_LOCK).items()
        if _installed(name) and version(name) != pinned
    }
    assert wrong == {}, "reinstall from requirements-dev.lock (see the README)"


def _installed(name: str) -> bool:
    try:
        version(name)
    except PackageNotFoundError:  # a package for another platform (colorama on Windows)
        return False
    return True


def test_readme_ci_and_dockerfile_install_from_the_lock() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", quick, re.DOTALL)
    assert len(commands) == 2, "the quick start has exactly two commands"
    run, test = commands
    assert "--require-hashes -r requirements.lock" in run
    assert "remindbot run" in run
    assert "--require-hashes -r requirements-dev.lock" in test
    assert test.endswith(".venv/bin/python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements-dev.lock" in ci
    assert ci.rstrip().endswith(".venv/bin/python -m pytest")
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements.lock" in dockerfile
    assert "--no-build-isolation" in dockerfile


def test_upgrade_lists_what_moved() -> None:
    before = {"babel": "2.18.0", "click": "8.1.0", "old": "1.0"}
    after = {"babel": "2.19.0", "click": "8.1.0", "new": "2.0"}
    assert upgrade_deps.changes(before, after) == [
        "  babel: 2.18.0 -> 2.19.0",
        "  new: (new) -> 2.0",
        "  old: 1.0 -> (removed)",
    ]
