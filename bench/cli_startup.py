"""CPU time of the command line's start, beside a bare interpreter in the same run.

    python bench/cli_startup.py [--runs 15]

Each command runs as a fresh process ``--runs`` times; the figure is its CPU time (user +
system, from the kernel's accounting of the finished child), which a busy machine changes
far less than wall time. Targets: ``remindbot --help`` ≤ 0.35 s, ``remindbot plan … --format
json`` for the worked example ≤ 0.6 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
WORKED_EXAMPLE = [
    "plan", "--course", "2026-01-05", "--course", "2027-01-04:3",
    "--timezone", "Europe/Berlin", "--send-time", "09:00", "--format", "json",
]  # fmt: skip
TARGETS = {"remindbot --help": 0.35, "remindbot plan --format json": 0.6}


@dataclass(frozen=True)
class Figure:
    name: str
    cpu: list[float]
    wall: list[float]

    def line(self, anchor: Figure | None) -> str:
        cpu, wall = statistics.median(self.cpu), statistics.median(self.wall)
        text = (
            f"{self.name:32} CPU median {cpu:.3f} s (min {min(self.cpu):.3f}, "
            f"max {max(self.cpu):.3f})  wall median {wall:.3f} s"
        )
        if anchor is not None:
            text += f"  {cpu / statistics.median(anchor.cpu):.1f}x python -c pass"
        target = TARGETS.get(self.name)
        if target is not None:
            text += f"  target ≤ {target} s: {'met' if cpu <= target else 'NOT MET'}"
        return text


def measure(name: str, command: list[str], runs: int) -> Figure:
    cpu, wall = [], []
    for _ in range(runs):
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        _pid, status, usage = os.wait4(process.pid, 0)
        wall.append(time.perf_counter() - started)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{name} failed with exit status {status}")
        cpu.append(usage.ru_utime + usage.ru_stime)
    return Figure(name, cpu, wall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    remindbot = str(BIN / "remindbot")
    print(f"load average {' '.join(f'{n:.2f}' for n in os.getloadavg())}, {runs} runs each")
    anchor = measure("python -c pass", [sys.executable, "-c", "pass"], runs)
    print(anchor.line(None))
    failed = False
    for name, command in (
        ("remindbot --help", [remindbot, "--help"]),
        ("remindbot plan --format json", [remindbot, *WORKED_EXAMPLE]),
    ):
        figure = measure(name, command, runs)
        print(figure.line(anchor))
        failed |= statistics.median(figure.cpu) > TARGETS[name]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
