"""Screenshots of the staff console for the README: docs/console-*.png.

    python scripts/screenshots.py [--out docs] [--chromium /usr/bin/chromium]

Seeds the clinic of the browser tests (tests/web/seed.py) into a temporary SQLite file,
runs the bot's web server on 127.0.0.1 and takes each page with Debian's Chromium through
Playwright (nothing is downloaded). Re-run it after changing a page, and look at the files.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from playwright.async_api import Browser, Page, ViewportSize, async_playwright  # noqa: E402

from bot.context import Services  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.web.server import WebServer  # noqa: E402
from scheduler import web_access  # noqa: E402
from scheduler.clock import SystemClock  # noqa: E402
from scheduler.db import create_engine, session_factory  # noqa: E402
from scheduler.dispatcher import Dispatcher  # noqa: E402
from tests.web.seed import LATE_WINDOW, STAFF, NoSender, seed  # noqa: E402

DESKTOP = ViewportSize(width=1280, height=900)
PHONE = ViewportSize(width=390, height=844)
# The tallest picture of a long page (the patient's plan runs to 120 reminders).
MAX_HEIGHT = 1800


@dataclass(frozen=True)
class Shot:
    name: str
    who: str
    path: str
    phone: bool = False
    locale: str | None = None
    full: bool = True


SHOTS = (
    Shot("deliveries", "admin", "/deliveries"),
    Shot("deliveries-failed", "admin", "/deliveries?status=failed"),
    Shot("patients", "coordinator", "/patients"),
    Shot("patient", "coordinator", "/patients/MS-102"),
    Shot("alerts", "admin", "/alerts"),
    Shot("ar", "south_coordinator", "/patients/MS-201", locale="ar"),
    Shot("phone", "coordinator", "/deliveries", phone=True),
    Shot("phone-patient", "coordinator", "/patients/MS-101", phone=True),
)


async def sign_in(page: Page, base: str, services: Services, who: str) -> None:
    assert services.sessions is not None
    async with services.sessions.begin() as session:
        token = await web_access.issue_login(
            session, user_id=STAFF[who].user_id, now=datetime.now(UTC)
        )
    response = await page.goto(f"{base}/login?token={token}")
    if response is None or not response.ok:
        raise SystemExit(f"sign-in as {who} failed")


async def take(browser: Browser, base: str, services: Services, shot: Shot, out: Path) -> Path:
    context = await browser.new_context(
        viewport=PHONE if shot.phone else DESKTOP,
        device_scale_factor=2 if shot.phone else 1,
        is_mobile=shot.phone,
        has_touch=shot.phone,
        locale="en-US",
        timezone_id="Europe/Berlin",
    )
    try:
        page = await context.new_page()
        await sign_in(page, base, services, shot.who)
        if shot.locale:
            await page.select_option("#pref-locale", shot.locale)
            async with page.expect_navigation():
                await page.locator("aside.preferences button[type=submit]").click()
        response = await page.goto(base + shot.path)
        if response is None or response.status != 200:
            raise SystemExit(f"{shot.path}: {response.status if response else 'no response'}")
        viewport = PHONE if shot.phone else DESKTOP
        height = await page.evaluate("document.documentElement.scrollHeight")
        path = out / f"console-{shot.name}.png"
        limit = MAX_HEIGHT if not shot.phone else 2 * PHONE["height"]
        await page.screenshot(
            path=path,
            full_page=shot.full,
            clip={"x": 0, "y": 0, "width": viewport["width"], "height": min(height, limit)},
        )
        return path
    finally:
        await context.close()


async def run(out: Path, chromium: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="remindbot_screens_") as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'clinic.db'}"
        engine = create_engine(url)
        await seed(engine, now=datetime.now(UTC) - timedelta(minutes=1))
        sessions = session_factory(engine)
        clock = SystemClock()
        settings = load_settings(DATABASE_URL=url, REMINDBOT_DEFAULT_TIMEZONE="Europe/Berlin")
        dispatcher = Dispatcher(
            sessions=sessions, sender=NoSender(), clock=clock, late_window=LATE_WINDOW
        )
        services = Services(
            settings=settings, sessions=sessions, clock=clock, dispatcher=dispatcher
        )
        server = WebServer(services, host="127.0.0.1", port=0)
        await server.start()
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=chromium)
                try:
                    for shot in SHOTS:
                        path = await take(
                            browser, f"http://127.0.0.1:{server.port}", services, shot, out
                        )
                        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
                finally:
                    await browser.close()
        finally:
            await server.stop()
            await engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument(
        "--chromium",
        type=Path,
        default=Path(os.environ.get("REMINDBOT_TEST_CHROMIUM", "/usr/bin/chromium")),
    )
    args = parser.parse_args()
    if not args.chromium.is_file():
        print(f"no Chromium at {args.chromium}: apt-get install chromium", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(args.out.resolve(), args.chromium))
    return 0


if __name__ == "__main__":
    sys.exit(main())
