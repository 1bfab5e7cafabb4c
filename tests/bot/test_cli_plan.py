import json
import subprocess
import sys
from datetime import date, datetime

import pytest
from icalendar import Calendar

from bot.cli import main
from bot.i18n import translator
from scheduler.protocol import Kind
from tests.bot.calendar_checks import Expected, check_reminder_calendar

WORKED = ["plan", "--course", "2026-01-05", "--course", "2027-01-04:3"]
BERLIN = [*WORKED, "--timezone", "Europe/Berlin", "--send-time", "09:00"]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    out, err = capsys.readouterr()
    assert isinstance(exited.value.code, int)
    return exited.value.code, out, err


def test_json_is_sorted_list_with_kind_and_local_due(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([*BERLIN, "--format", "json"], capsys)
    assert (code, err) == (0, "")
    items = json.loads(out)
    assert len(items) == 114
    dues = [datetime.fromisoformat(item["due"]) for item in items]
    assert dues == sorted(dues)
    labs = [item for item in items if item["kind"] == "labs_monthly"]
    assert labs[0]["due"] == "2026-02-05T09:00:00+01:00"
    assert labs[5]["due"] == "2026-07-05T09:00:00+02:00"
    assert {"kind", "occurrence", "date", "due", "course"} <= labs[0].keys()


def test_cbp_adds_contraception(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run([*BERLIN, "--cbp", "--format", "json"], capsys)
    kinds = {item["kind"] for item in json.loads(out)}
    assert {"contraception", "contraception_end"} <= kinds


def test_table_lists_months_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(BERLIN, capsys)
    assert code == 0
    assert "Reminder plan: 114 reminders, monitoring until 2031-01-06" in out
    assert "Monthly blood and urine tests" in out
    assert "2031-01" in out
    summary = out[out.index("Per kind") :]
    assert "labs_monthly" in summary
    assert "60" in summary


def test_ics_is_a_valid_calendar_with_stable_uids(capsys: pytest.CaptureFixture[str]) -> None:
    _, first, _ = run([*BERLIN, "--format", "ics"], capsys)
    _, second, _ = run([*BERLIN, "--format", "ics"], capsys)
    events = Calendar.from_ical(first).walk("VEVENT")
    assert len(events) == 114
    uids = [str(event["uid"]) for event in events]
    assert len(set(uids)) == len(uids)
    assert uids == [str(event["uid"]) for event in Calendar.from_ical(second).walk("VEVENT")]
    start = events[0].decoded("dtstart")
    assert start.tzinfo is not None
    assert Calendar.from_ical(first).walk("VTIMEZONE")


@pytest.mark.parametrize(
    ("locale", "flags", "cervix"),
    [
        (None, [], False),  # English unless --locale says otherwise
        ("ru", ["--cbp"], True),
        ("ar", ["--cbp", "--no-cervix"], False),
    ],
)
def test_ics_events_remind_with_the_message_in_the_chosen_language(
    locale: str | None, flags: list[str], cervix: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    language = ["--locale", locale] if locale else []
    code, ics, err = run([*BERLIN, *flags, *language, "--format", "ics"], capsys)
    assert (code, err) == (0, "")
    _, listed, _ = run([*BERLIN, *flags, "--format", "json"], capsys)
    expected = {
        f"plan-{item['kind']}-{item['occurrence']}@remindbot": Expected(
            Kind(item["kind"]),
            date.fromisoformat(item["about"]) if item["about"] else None,
            datetime.fromisoformat(item["due"]),
        )
        for item in json.loads(listed)
    }
    tr = translator(locale or "en")
    check_reminder_calendar(ics.encode(), expected, tr=tr, cervix=cervix, zone="Europe/Berlin")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plan", "--timezone", "UTC"], "Missing option '--course'"),
        (["plan", "--course", "2026-01-05"], "Missing option '--timezone'"),
        ([*WORKED, "--timezone", "Mars/Base"], "Mars/Base is not a known time zone"),
        (["plan", "--course", "2026-02-30", "--timezone", "UTC"], "2026-02-30 is not a valid date"),
        (["plan", "--course", "2026-01-05:9", "--timezone", "UTC"], "Course 1: 9 is not a number"),
        ([*BERLIN[:-1], "06:00"], "outside 07:00–21:00"),
        ([*BERLIN, "--prophylaxis-days", "5"], "anti-herpes prophylaxis"),
        ([*BERLIN, "--prophylaxis-days", "many"], "'many' is not a valid integer"),
        ([*BERLIN, "--format", "pdf"], "'pdf' is not one of"),
        (
            ["plan", "--course", "2026-01-05", "--course", "2026-11-02", "--timezone", "UTC"],
            "before 2026-12-06: earlier than 12 months minus 30 days after course 1 "
            "(2026-01-05). Confirm the override if this is intended. "
            "Add --allow-early-course to confirm.",
        ),
    ],
)
def test_bad_arguments_one_line_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(args, capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("remindbot: ")
    assert message in err


def test_override_allows_early_course(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["plan", "--course", "2026-01-05", "--course", "2026-11-02"]
    code, out, _ = run(
        [*args, "--timezone", "UTC", "--allow-early-course", "--format", "json"], capsys
    )
    assert code == 0
    assert any(item["occurrence"] == "c2-d0" for item in json.loads(out))


def test_more_than_four_courses_warns_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    courses = [arg for year in range(2026, 2031) for arg in ("--course", f"{year}-01-05")]
    code, out, err = run(["plan", *courses, "--timezone", "UTC", "--format", "json"], capsys)
    assert code == 0
    assert json.loads(out)
    assert err.startswith("Warning: Course 5: more than 4 courses")


def test_console_script_reports_without_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", *WORKED, "--timezone", "Nowhere"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "remindbot: Nowhere is not a known time zone. Use a name such as Europe/Berlin."
    )


def test_render_prints_every_message_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([*BERLIN, "--render", "--locale", "en"], capsys)
    assert (code, err) == (0, "")
    headers = [line for line in out.splitlines() if line.startswith("── ")]
    assert headers[0] == "── December 29, 2025, 9:00\u202fAM (+0100) ──"
    # One message per instant: 114 reminders, bundled where due together.
    assert len(headers) == out.count("This is an automated reminder.")
    assert 60 < len(headers) < 114
    assert "It is time for your monthly blood and urine tests" in out
    assert "%(" not in out


def test_render_in_german_formats_dates(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run([*BERLIN, "--render", "--locale", "de"], capsys)
    assert code == 0
    assert "── 5. Februar 2026, 09:00 (+0100) ──" in out


def test_render_refuses_an_unknown_locale(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([*BERLIN, "--render", "--locale", "xx"], capsys)
    assert code == 2
    assert "xx is not an available language" in err
