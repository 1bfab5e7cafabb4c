"""Plan many synthetic patients and print throughput and peak memory.

    python bench/plan_bench.py [--patients 100000] [--seed 1] [--rounds 3]

Patients get 1-3 courses, a zone from a list that covers both hemispheres and
half-hour offsets, a send time from 07:00 to 21:00 and the CBP flag at random.
Plans are made one after another and dropped, as the store does when it materialises them.
Each round prints wall and CPU time: on a shared machine the CPU time is the stable figure
(the target, 3,000 patients/s on one core, is read from it), beside the load average.
"""

from __future__ import annotations

import argparse
import os
import random
import time
import tracemalloc
from datetime import date, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

from scheduler.planner import Course, Profile, plan
from scheduler.protocol import add_months

ZONES = [
    ZoneInfo(name)
    for name in (
        "Europe/Berlin",
        "Europe/London",
        "America/New_York",
        "America/Sao_Paulo",
        "Australia/Sydney",
        "Asia/Kolkata",
        "Asia/Tehran",
        "Europe/Kyiv",
    )
]


def synthetic_profiles(count: int, seed: int) -> list[Profile]:
    rng = random.Random(seed)
    profiles = []
    for _ in range(count):
        start = date(2024, 1, 1) + timedelta(days=rng.randrange(3 * 365))
        courses = [Course(start, 5)]
        for _ in range(rng.choice((0, 1, 1, 2))):
            later = add_months(courses[-1].start, 12) + timedelta(days=rng.randrange(-30, 120))
            courses.append(Course(later, 3))
        profiles.append(
            Profile(
                courses=tuple(courses),
                timezone=rng.choice(ZONES),
                send_time=clock_time(rng.randrange(7, 21), rng.choice((0, 15, 30, 45))),
                cbp=rng.random() < 0.5,
                prophylaxis_days=rng.choice((30, 30, 60)),
            )
        )
    return profiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    profiles = synthetic_profiles(args.patients, args.seed)
    count = len(profiles)
    print(f"patients:        {count:,}")
    for round_ in range(1, args.rounds + 1):
        load = " ".join(f"{n:.2f}" for n in os.getloadavg())
        items = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for profile in profiles:
            items += len(plan(profile))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"round {round_}:         wall {wall:.2f} s ({count / wall:,.0f} patients/s), "
            f"CPU {cpu:.2f} s ({count / cpu:,.0f} patients/s, {cpu / count * 1e6:.0f} µs "
            f"per patient), {items / cpu:,.0f} items/s of CPU; load average {load}"
        )

    sample = profiles[: min(len(profiles), 10_000)]
    tracemalloc.start()
    for profile in sample:
        plan(profile)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(f"plan items:      {items:,} ({items / count:.1f} per patient)")
    print("target:          >= 3,000 patients/s of CPU time on one core")
    print(f"peak memory:     {peak / 1024:,.0f} KiB while planning {len(sample):,} in turn")


if __name__ == "__main__":
    main()
