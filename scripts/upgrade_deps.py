"""Move the lock files to the newest versions pyproject.toml allows, and test them.

    python scripts/upgrade_deps.py

1. re-locks with ``scripts/lock.py --upgrade`` and prints every version that changed;
2. runs ``bash .ci/run``: a fresh ``.venv`` with exactly the new versions, ruff, mypy, the
   catalogs' plural rules against the new Babel (``scripts/catalogs.py check`` names each
   locale whose CLDR rule changed), and the whole test suite.

The new lock files stay in the working tree either way: commit them when the run passes;
``git checkout requirements.lock requirements-dev.lock`` goes back to the old ones.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCKS = (ROOT / "requirements-dev.lock", ROOT / "requirements.lock")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def pins(path: Path) -> dict[str, str]:
    """Package name -> pinned version in a lock file."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return {name.lower(): version for name, version in _PIN.findall(text)}


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """One line per package added, removed or moved to another version."""
    lines = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old != new:
            lines.append(f"  {name}: {old or '(new)'} -> {new or '(removed)'}")
    return lines


def main() -> int:
    before = pins(LOCKS[0])
    subprocess.run([sys.executable, "scripts/lock.py", "--upgrade"], cwd=ROOT, check=True)
    moved = changes(before, pins(LOCKS[0]))
    print("Versions changed:" if moved else "Every package is at its newest allowed version.")
    print("\n".join(moved))
    if not moved:
        return 0
    result = subprocess.run(["bash", ".ci/run"], cwd=ROOT, check=False)
    if result.returncode:
        print(
            "The suite fails on the new versions: fix it, narrow a bound in pyproject.toml "
            "and run scripts/lock.py, or restore the old lock with "
            "git checkout requirements.lock requirements-dev.lock"
        )
        return result.returncode
    print("The suite passes on the new versions: commit requirements*.lock.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
