"""Write the lock files from ``pyproject.toml``.

    python scripts/lock.py              # after changing a dependency: keep every other pin
    python scripts/lock.py --upgrade    # the newest versions the bounds in pyproject.toml allow

``requirements-dev.lock`` pins everything the tests need, ``requirements.lock`` what the bot
needs to run; both include the build backend, so that ``pip install --no-build-isolation``
builds remindbot itself from pinned parts too. Every pin carries its hashes and the files hold
for every platform and every Python from 3.11 on (``uv pip compile --universal``), so one lock
serves CI, a laptop and the Docker image alike. The runtime lock is resolved inside the dev
lock: both give the same version of every package they share.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
DEV_LOCK = ROOT / "requirements-dev.lock"
RUNTIME_LOCK = ROOT / "requirements.lock"
OLDEST_PYTHON = "3.11"
# What hatchling asks for to build an editable install of a project with force-include.
EDITABLE_BUILD = "editables>=0.3"


def build_requirements() -> str:
    """The ``[build-system] requires`` of pyproject.toml and what an editable build adds."""
    with PYPROJECT.open("rb") as file:
        requires: list[str] = tomllib.load(file)["build-system"]["requires"]
    return "".join(f"{requirement}\n" for requirement in [*requires, EDITABLE_BUILD])


def compile_lock(output: Path, *extra: str) -> None:
    command = [
        sys.executable, "-m", "uv", "pip", "compile", "--quiet",
        "--universal", "--python-version", OLDEST_PYTHON, "--generate-hashes",
        "--custom-compile-command", "python scripts/lock.py",
        "--output-file", str(output.relative_to(ROOT)),
        "pyproject.toml", "-", *extra,
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, input=build_requirements(), text=True, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--upgrade", action="store_true", help="take the newest allowed version of everything"
    )
    upgrade = ["--upgrade"] if parser.parse_args(argv).upgrade else []
    compile_lock(DEV_LOCK, "--extra", "dev", *upgrade)
    compile_lock(RUNTIME_LOCK, "--constraint", str(DEV_LOCK.relative_to(ROOT)), *upgrade)
    return 0


if __name__ == "__main__":
    sys.exit(main())
