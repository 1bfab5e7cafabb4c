"""CSV files: every row checked first, all problems reported, nothing half-imported."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.importer import EmptyFile, MissingColumns, NotUtf8, UnknownColumns, parse_file
from scheduler import store
from scheduler.models import Patient, Reminder
from tests.conftest import team_with_coordinator

LOCALES = {"en", "de"}
HEADER = "label,locale,timezone,send_time,cbp,courses,prophylaxis_days,allow_early_course\n"
SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "patients.example.csv"
NOW = datetime(2025, 12, 1, tzinfo=UTC)


def test_sample_file_is_valid() -> None:
    parsed = parse_file(SAMPLE.read_bytes(), locales=LOCALES)
    assert parsed.errors == []
    assert [e.label for _, e in parsed.enrolments] == ["MS-0001", "MS-0002", "MS-0003"]
    second = parsed.enrolments[1][1]
    assert second.profile.cbp
    assert [c.days for c in second.profile.courses] == [5, 3]
    third = parsed.enrolments[2][1]
    assert third.profile.prophylaxis_days == 60
    assert third.profile.courses[0].days == 4


def test_every_bad_row_is_reported_with_its_line() -> None:
    data = (
        HEADER
        + "A-1,en,Europe/Berlin,09:00,no,2026-01-05,,\n"
        + "A-2,xx,Europe/Berlin,09:00,no,2026-01-05,,\n"  # line 3: unknown locale
        + "A-3,en,Europe/Berlin,05:00,no,2026-01-05,,\n"  # line 4: send time
        + "A-4,en,Europe/Berlin,09:00,maybe,2026-01-05,,\n"  # line 5: flag
        + "A-5,en,Europe/Berlin,09:00,no,2026-01-05 2026-06-01,,\n"  # line 6: too early
        + "A-1,en,Europe/Berlin,09:00,no,2026-01-05,,\n"  # line 7: duplicate label
        + "\n"
        + "A-8,de,Mars/Base,,,2026-02-30,,\n"  # line 9: first problem only
    ).encode()
    parsed = parse_file(data, locales=LOCALES)
    assert [e.label for _, e in parsed.enrolments] == ["A-1"]
    reported = [(error.line, str(error.error)) for error in parsed.errors]
    assert [line for line, _ in reported] == [3, 4, 5, 6, 7, 9]
    assert "xx is not an available language" in reported[0][1]
    assert "outside 07:00–21:00" in reported[1][1]
    assert "cbp must be yes or no, not maybe" in reported[2][1]
    assert "earlier than 12 months minus 30 days after course 1" in reported[3][1]
    assert "already used on line 2" in reported[4][1]
    assert "2026-02-30 is not a valid date" in reported[5][1]


def test_semicolons_bom_and_optional_columns() -> None:
    data = "\ufefflabel;locale;timezone;courses\nB-1;de;Asia/Kolkata;2026-01-05|2027-01-04\n"
    parsed = parse_file(data.encode(), locales=LOCALES)
    assert parsed.errors == []
    [(_, enrolment)] = parsed.enrolments
    assert enrolment.locale == "de"
    assert len(enrolment.profile.courses) == 2
    assert enrolment.profile.send_time.hour == 9


def test_the_cervix_column_defaults_to_the_cbp_answer() -> None:
    data = (
        b"label,locale,timezone,courses,cbp,cervix\n"
        b"C-1,en,UTC,2026-01-05,no,yes\n"  # a cervix, cannot become pregnant
        b"C-2,en,UTC,2026-01-05,yes,\n"  # not given: as cbp
        b"C-3,en,UTC,2026-01-05,no,\n"
        b"C-4,en,UTC,2026-01-05,yes,no\n"
        b"C-5,en,UTC,2026-01-05,no,sometimes\n"
    )
    parsed = parse_file(data, locales=LOCALES)
    flags = {e.label: (e.profile.cbp, e.has_cervix) for _, e in parsed.enrolments}
    assert flags == {
        "C-1": (False, True),
        "C-2": (True, True),
        "C-3": (False, False),
        "C-4": (True, False),
    }
    [error] = parsed.errors
    assert (error.line, str(error.error)) == (6, "cervix must be yes or no, not sometimes.")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", EmptyFile),
        (b"label,locale\nA,en\n", MissingColumns),
        (HEADER.replace("cbp", "name").encode(), UnknownColumns),
        ("label,locale,timezone,courses\nä,en,UTC,2026-01-05\n".encode("latin-1"), NotUtf8),
    ],
)
def test_unreadable_files(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_file(data, locales=LOCALES)


def big_file(rows: int) -> bytes:
    lines = [HEADER]
    for n in range(rows):
        start = datetime(2026, 1, 1) + timedelta(days=n % 300)  # noqa: DTZ001 - a date only
        cbp = "yes" if n % 2 else "no"
        lines.append(f"P-{n:05d},en,Europe/Berlin,09:00,{cbp},{start:%Y-%m-%d},30,no\n")
    return "".join(lines).encode()


# With statements of 200 rows, several per table; 10,000 rows and the speed of the whole
# import are bench/import_bench.py's (which checks the same counts).
ROWS = 700


async def test_many_rows_import_in_one_transaction(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "_CHUNK", 200)
    parsed = parse_file(big_file(ROWS), locales=LOCALES)
    assert parsed.errors == []
    enrolments = [enrolment for _, enrolment in parsed.enrolments]
    await team_with_coordinator(sessions)
    async with sessions.begin() as session:
        enrolled = await store.enroll(
            session, enrolments=enrolments, actor="cli", now=NOW, late_window=timedelta(hours=72)
        )
    assert len({e.invite_token for e in enrolled}) == ROWS
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Patient)) == ROWS
        reminders = await session.scalar(select(func.count()).select_from(Reminder))
    assert reminders is not None
    assert reminders > ROWS * 60


async def test_failure_late_in_an_import_rolls_everything_back(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    parsed = parse_file(big_file(ROWS), locales=LOCALES)
    enrolments = [enrolment for _, enrolment in parsed.enrolments]
    await team_with_coordinator(sessions)
    async with sessions.begin() as session:
        await store.enroll(
            session,
            enrolments=enrolments[-1:],
            actor="cli",
            now=NOW,
            late_window=timedelta(hours=72),
        )

    async def import_in_batches() -> None:  # as the CLI imports: batches, one transaction
        async with sessions.begin() as session:
            for start in range(0, len(enrolments), 300):
                await store.enroll(
                    session,
                    enrolments=enrolments[start : start + 300],
                    actor="cli",
                    now=NOW,
                    late_window=timedelta(hours=72),
                )

    with pytest.raises(store.LabelTaken):
        await import_in_batches()
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Patient)) == 1
