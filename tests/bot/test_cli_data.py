"""The database commands of ``remindbot``, on a SQLite file in a temporary directory."""

import asyncio
import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.cli import common, main
from bot.settings import load_settings
from scheduler.db import create_engine
from scheduler.models import AuditEvent, Course, Invite, Patient, Reminder, StaffUser
from tests.conftest import sqlite_with_coordinator

ENROLL = [
    "enroll",
    "--label",
    "MS-001",
    "--locale",
    "en",
    "--timezone",
    "Europe/Berlin",
    "--course",
    "2026-01-05",
]


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'remindbot.db'}")
    monkeypatch.setenv("REMINDBOT_BOT_USERNAME", "clinic_bot")
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    sqlite_with_coordinator(tmp_path / "remindbot.db")
    return tmp_path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    out, err = capsys.readouterr()
    assert isinstance(exited.value.code, int)
    return exited.value.code, out, err


def count(model: type, workdir: Path) -> int:
    async def query() -> int:
        engine = create_engine(f"sqlite+aiosqlite:///{workdir / 'remindbot.db'}")
        try:
            async with engine.connect() as connection:
                return int(
                    (await connection.execute(select(func.count()).select_from(model))).scalar_one()
                )
        finally:
            await engine.dispose()

    return asyncio.run(query())


def test_migrate_twice(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["migrate"], capsys)[0] == 0
    code, out, _ = run(["migrate"], capsys)
    assert code == 0
    assert "is up to date" in out


def test_enroll_prints_link_and_writes_qr(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    code, out, err = run([*ENROLL, "--cbp", "--coordinator", "501"], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("Enrolled MS-001. Invite link (single use, valid until ")
    link = lines[1]
    assert link.startswith("https://t.me/clinic_bot?start=")
    token = link.split("=", 1)[1]
    assert 0 < len(token) <= 64
    png = (workdir / "invite-MS-001.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert count(Patient, workdir) == 1
    assert count(Reminder, workdir) > 80
    assert count(AuditEvent, workdir) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--label", "Jane Doe"], "Jane Doe is not a valid label"),
        (["--locale", "xx"], "xx is not an available language"),
        (["--timezone", "Nowhere/Town"], "Nowhere/Town is not a known time zone"),
        (["--course", "2026-13-01"], "2026-13-01 is not a valid date"),
        (["--send-time", "23:00"], "outside 07:00–21:00"),
    ],
)
def test_bad_enrolment_changes_nothing(
    change: list[str], message: str, capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    assert run(["migrate"], capsys)[0] == 0
    args = list(ENROLL)
    option = change[0]
    if option in args and option != "--course":
        args[args.index(option) + 1] = change[1]
    else:
        args += change
    code, out, err = run(args, capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert message in err
    assert count(Patient, workdir) == 0
    assert not list(workdir.glob("*.png"))


def test_duplicate_label_refused(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    assert run(ENROLL, capsys)[0] == 0
    code, _, err = run(ENROLL, capsys)
    assert code == 2
    assert "MS-001 is already in use" in err
    assert count(Patient, workdir) == 1


def test_enroll_needs_a_way_to_name_the_bot(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, workdir: Path
) -> None:
    monkeypatch.delenv("REMINDBOT_BOT_USERNAME")
    code, _, err = run(ENROLL, capsys)
    assert code == 2
    assert "Set REMINDBOT_BOT_USERNAME or TELEGRAM_BOT_TOKEN" in err


def test_bad_setting_names_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMINDBOT_LATE_WINDOW_HOURS", "soon")
    code, out, err = run(["patients"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("remindbot: REMINDBOT_LATE_WINDOW_HOURS: ")
    assert err.count("\n") == 1


def test_bad_default_timezone_names_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMINDBOT_DEFAULT_TIMEZONE", "Europe/Berln")
    code, out, err = run(["patients"], capsys)
    assert (code, out) == (2, "")
    assert err == (
        "remindbot: REMINDBOT_DEFAULT_TIMEZONE: Europe/Berln is not a known time zone. "
        "Did you mean Europe/Berlin?\n"
    )


def test_default_timezone_is_read_as_people_write_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REMINDBOT_DEFAULT_TIMEZONE", raising=False)
    assert load_settings().default_timezone == "UTC"
    monkeypatch.setenv("REMINDBOT_DEFAULT_TIMEZONE", "new york")
    assert load_settings().default_timezone == "America/New_York"


GOOD_CSV = (
    "label,locale,timezone,courses,cbp\n"
    "P-1,en,Europe/Berlin,2026-01-05,yes\n"
    "P-2,en,America/New_York,2026-02-02 2027-02-01,no\n"
)


def test_import_writes_invite_links(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    source = workdir / "patients.csv"
    source.write_text(GOOD_CSV)
    code, out, err = run(["import", str(source)], capsys)
    assert (code, err) == (0, "")
    assert "Imported 2 patients" in out
    with (workdir / "patients-invites.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [row["label"] for row in rows] == ["P-1", "P-2"]
    assert all(row["invite_link"].startswith("https://t.me/clinic_bot?start=") for row in rows)
    assert count(Patient, workdir) == 2
    assert count(Course, workdir) == 3
    assert count(Invite, workdir) == 2


BAD_CSV = GOOD_CSV + (
    "P-3,en,Nowhere/Town,2026-01-05,no\n"  # line 4
    "P-4,en,Europe/Berlin,2026-01-05,perhaps\n"  # line 5
    "P-5,en,Europe/Berlin,,no\n"  # line 6
)


def test_import_with_bad_rows_imports_nothing(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    source = workdir / "patients.csv"
    source.write_text(BAD_CSV)
    code, out, err = run(["import", str(source)], capsys)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith("line 4: Nowhere/Town is not a known time zone")
    assert lines[1].startswith("line 5: cbp must be yes or no")
    assert lines[2] == "line 6: courses is empty."
    assert lines[3] == (
        "remindbot: 3 invalid rows; nothing was imported. Fix them or use --skip-invalid."
    )
    assert count(Patient, workdir) == 0
    assert not (workdir / "patients-invites.csv").exists()


def test_import_skip_invalid(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    assert run(["enroll", *ENROLL[1:]], capsys)[0] == 0
    source = workdir / "patients.csv"
    source.write_text(BAD_CSV + "MS-001,en,UTC,2026-01-05,no\n")  # line 7: label taken
    output = workdir / "links.csv"
    code, out, err = run(["import", str(source), "--skip-invalid", "--output", str(output)], capsys)
    assert code == 0
    assert [line.split(":")[0] for line in err.splitlines()] == [
        "line 4",
        "line 5",
        "line 6",
        "line 7",
    ]
    assert "MS-001 is already in use" in err
    assert "Imported 2 patients" in out
    assert "Skipped 4 invalid rows." in out
    assert count(Patient, workdir) == 3
    assert len(output.read_text().splitlines()) == 3


def test_import_refuses_to_overwrite_output(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    assert run(["migrate"], capsys)[0] == 0
    source = workdir / "patients.csv"
    source.write_text(GOOD_CSV)
    (workdir / "patients-invites.csv").write_text("keep me")
    code, _, err = run(["import", str(source)], capsys)
    assert code == 2
    assert "already exists" in err
    assert (workdir / "patients-invites.csv").read_text() == "keep me"
    assert count(Patient, workdir) == 0


def test_patients_course_add_and_roles(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    assert run(ENROLL, capsys)[0] == 0
    code, out, _ = run(["patients", "--format", "json"], capsys)
    assert code == 0
    [patient] = json.loads(out)
    assert patient["label"] == "MS-001"
    assert patient["status"] == "invited"
    assert patient["next_due"].endswith(("+01:00", "+02:00"))

    code, out, _ = run(["course", "add", "MS-001", "2027-01-04"], capsys)
    assert code == 0
    assert "Recorded course 2 for MS-001" in out
    code, _, err = run(["course", "add", "MS-001", "2027-03-01"], capsys)
    assert code == 2
    assert "Add --allow-early-course to confirm." in err
    code, _, err = run(["course", "add", "NOBODY", "2028-01-04"], capsys)
    assert (code, err) == (2, "remindbot: No patient has the label NOBODY.\n")
    assert count(Course, workdir) == 2

    assert run(["grant", "42", "coordinator"], capsys)[0] == 0
    assert count(StaffUser, workdir) == 2  # and the team's coordinator
    assert run(["revoke", "42"], capsys)[0] == 0
    code, _, err = run(["revoke", "42"], capsys)
    assert code == 2
    assert "has no staff role" in err
    code, _, err = run(["grant", "42", "owner"], capsys)
    assert code == 2
    assert count(StaffUser, workdir) == 1


def test_deliveries_log_formats_and_filters(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    # Enrolled now for a course in January 2026: the reminders already due were skipped.
    assert run([*ENROLL, "--course", "2027-01-04"], capsys)[0] == 0
    code, out, _ = run(["deliveries", "--format", "json", "--status", "skipped"], capsys)
    assert code == 0
    entries = json.loads(out)
    assert entries
    assert all(e["status"] == "skipped" and e["label"] == "MS-001" for e in entries)
    assert entries[0]["history"][0]["detail"] == "before enrolment"
    dues = [e["due"] for e in entries]
    assert dues == sorted(dues, reverse=True)  # newest first

    code, out, _ = run(
        [
            "deliveries",
            "--format",
            "csv",
            "--kind",
            "labs_monthly",
            "--since",
            "2026-03-01",
            "--until",
            "2026-03-31",
        ],
        capsys,
    )
    rows = list(csv.DictReader(out.splitlines()))
    assert [(r["occurrence"], r["event_status"]) for r in rows] == [("m2", "skipped")]
    assert rows[0]["due"] == "2026-03-05T09:00+01:00"

    code, out, _ = run(["deliveries", "--patient", "NOBODY"], capsys)
    assert code == 0
    assert "Delivery log: 0 reminders" in out

    code, _, err = run(["deliveries", "--status", "lost"], capsys)
    assert code == 2
    assert "'lost' is not one of" in err


def test_patient_commands_and_csv_that_no_spreadsheet_runs(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    enroll = [*ENROLL[:1], "--label=-A1", *ENROLL[3:]]
    assert run(enroll, capsys)[0] == 0
    code, out, _ = run(["patients", "--format", "csv"], capsys)
    assert code == 0
    rows = list(csv.reader(out.splitlines()))
    assert rows[0] == ["label", "status", "timezone", "next_due", "last_acknowledged"]
    assert rows[1][:3] == ["'-A1", "invited", "Europe/Berlin"]
    code, out, _ = run(["patient", "--format", "json", "--", "-A1"], capsys)
    assert code == 0
    shown = json.loads(out)
    assert (shown["label"], shown["status"], shown["courses"][0]["days"]) == ("-A1", "invited", 5)
    code, out, _ = run(["course", "list", "--", "-A1"], capsys)
    assert out.splitlines() == [
        "course 1: 2026-01-05, 5 infusion days",
        "monitoring until 2030-01-09",
    ]
    code, out, err = run(["invite", "--", "-A1"], capsys)
    assert (code, err) == (0, "")
    assert "the previous link no longer works" in out.splitlines()[0]
    assert out.splitlines()[1].startswith("https://t.me/clinic_bot?start=")
    code, _, err = run(["pause", "--", "-A1"], capsys)
    assert (code, err) == (2, "remindbot: -A1 is invited: only an active patient can be paused.\n")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], (False, False)),
        (["--cervix"], (False, True)),
        (["--cbp"], (True, True)),
        (["--cbp", "--no-cervix"], (True, False)),
    ],
)
def test_enroll_sets_the_cervix_flag_as_the_cbp_answer_unless_told(
    flags: list[str], expected: tuple[bool, bool], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([*ENROLL, *flags], capsys)[0] == 0
    code, out, _ = run(["patient", "MS-001", "--format", "json"], capsys)
    assert code == 0
    shown = json.loads(out)
    assert (shown["cbp"], shown["cervix"]) == expected


TEAM_CSV = (
    "label,locale,timezone,courses,team,coordinator\n"
    "N-1,en,Europe/Berlin,2026-01-05,north,950\n"
    "N-2,de,Europe/Berlin,2026-01-05,north,\n"
    "D-1,en,Europe/Berlin,2026-01-05,,\n"
)


def test_care_teams_from_the_command_line(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    code, out, _ = run(["team", "list"], capsys)
    assert (code, out) == (0, "default: 0 patients; coordinators: 900; staff: -\n")
    assert run(["team", "add", "north"], capsys)[:2] == (0, "Team north added.\n")
    code, _, err = run(["team", "add", "north"], capsys)
    assert (code, err) == (2, "remindbot: The team north already exists.\n")
    source = workdir / "teams.csv"
    source.write_text(TEAM_CSV)

    # Two teams now: a row without one is refused, and so is a team nobody could alert.
    code, _, err = run(["import", str(source)], capsys)
    assert code == 2
    assert "line 3: The team north has no coordinator" in err
    assert "line 4: Say which team the patient belongs to: default, north." in err
    assert count(Patient, workdir) == 0
    code, _, err = run(["team", "assign", "north", "950"], capsys)
    assert (code, err) == (
        2,
        "remindbot: User 950 has no coordinator or staff role. Grant one first; admins are "
        "in every team anyway.\n",
    )
    assert run(["grant", "950", "coordinator"], capsys)[0] == 0  # two teams: joins none
    assert run(["team", "assign", "north", "950"], capsys)[:2] == (
        0,
        "User 950 is now in team north.\n",
    )
    code, out, err = run(["import", str(source), "--team", "default"], capsys)
    assert (code, err) == (0, "")
    assert "Imported 3 patients" in out

    code, out, _ = run(["patients", "--team", "north", "--format", "csv"], capsys)
    assert code == 0
    assert [row["label"] for row in csv.DictReader(out.splitlines())] == ["N-1", "N-2"]
    code, out, _ = run(["deliveries", "--team", "default", "--format", "json"], capsys)
    assert code == 0
    assert {entry["label"] for entry in json.loads(out)} <= {"D-1"}
    code, _, err = run(["patients", "--team", "south"], capsys)
    assert (code, err) == (2, "remindbot: There is no team south.\n")
    code, out, _ = run(["team", "list"], capsys)
    assert out.splitlines() == [
        "default: 1 patient; coordinators: 900; staff: -",
        "north: 2 patients; coordinators: 950; staff: -",
    ]
    code, out, _ = run(["patient", "N-1", "--format", "json"], capsys)
    assert json.loads(out)["coordinator"] == 950


def test_enrolment_needs_a_coordinator_in_the_team(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    assert run(ENROLL, capsys)[0] == 0
    assert run(["revoke", "900"], capsys)[0] == 0  # the team's only coordinator leaves
    second = [*ENROLL[:2], "MS-002", *ENROLL[3:]]
    code, out, err = run(second, capsys)
    assert (code, out) == (2, "")
    assert err == (
        "remindbot: The team default has no coordinator, so nobody would be told of this "
        "patient's alerts. Assign a coordinator to the team first.\n"
    )
    assert count(Patient, workdir) == 1
    code, out, _ = run(["doctor"], capsys)
    assert code == 1
    assert (
        "FAIL  care teams: teams without a coordinator: default "
        "(hint: assign one: remindbot team assign TEAM USER_ID)"
    ) in out.splitlines()


def test_forget_from_the_command_line(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    assert run(ENROLL, capsys)[0] == 0
    code, out, _ = run(["forget", "MS-001", "--yes"], capsys)
    assert (code, out) == (0, "Erased MS-001: nothing about them is stored any more.\n")
    assert count(Patient, workdir) == 0
    assert count(Reminder, workdir) == 0
    code, _, err = run(["forget", "MS-001", "--yes"], capsys)
    assert (code, err) == (2, "remindbot: No patient has the label MS-001.\n")


ENROLLED_AT = datetime(2026, 3, 10, 8, tzinfo=UTC)
STOPPED_AT = ENROLLED_AT + timedelta(days=30)
LONG_LABEL = "NORTH-CLINIC-000123"


def withdraw(workdir: Path, label: str, now: datetime) -> None:
    from scheduler import store
    from scheduler.db import session_factory

    async def stop() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{workdir / 'remindbot.db'}")
        try:
            async with session_factory(engine).begin() as session:
                patient = await store.patient_by_label(session, label=label)
                assert patient is not None
                await store.withdraw(session, patient_id=patient.id, actor="test", now=now)
        finally:
            await engine.dispose()

    asyncio.run(stop())


def test_deliveries_default_to_the_last_weeks_activity(
    capsys: pytest.CaptureFixture[str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a /stop the cancelled reminders show at once, whatever their due date."""
    monkeypatch.setattr(common, "now", lambda: ENROLLED_AT)
    assert run([*ENROLL, "--course", "2027-01-04"], capsys)[0] == 0
    code, out, _ = run(["deliveries", "--format", "json"], capsys)
    skipped = json.loads(out)
    assert skipped
    assert {entry["status"] for entry in skipped} == {"skipped"}

    withdraw(workdir, "MS-001", STOPPED_AT)
    monkeypatch.setattr(common, "now", lambda: STOPPED_AT)
    code, out, err = run(["deliveries", "--format", "json"], capsys)
    assert (code, err) == (0, "")
    recent = json.loads(out)
    # Every reminder still to go was cancelled, future ones included; the skipped ones of
    # a month ago are not activity of this week.
    assert len(recent) > 60
    assert {entry["status"] for entry in recent} == {"cancelled"}
    assert max(entry["due"] for entry in recent) > "2030-"
    everything = json.loads(
        run(["deliveries", "--format", "json", "--active-days", "0"], capsys)[1]
    )
    assert len(everything) == len(recent) + len(skipped)
    month = json.loads(run(["deliveries", "--format", "json", "--active-days", "31"], capsys)[1])
    assert len(month) == len(everything)
    # --since/--until still filter by the due day, within the activity window.
    code, out, _ = run(
        ["deliveries", "--format", "json", "--since", "2027-01-01", "--until", "2027-01-31"],
        capsys,
    )
    assert {entry["due"][:7] for entry in json.loads(out)} == {"2027-01"}
    code, _, err = run(["deliveries", "--active-days", "-1"], capsys)
    assert code == 2
    assert "--active-days" in err


def test_deliveries_table_stays_readable_at_80_columns(
    capsys: pytest.CaptureFixture[str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "now", lambda: ENROLLED_AT)
    monkeypatch.setenv("COLUMNS", "80")
    enroll = [*ENROLL[:2], LONG_LABEL, *ENROLL[3:], "--course", "2027-01-04"]
    assert run(enroll, capsys)[0] == 0
    withdraw(workdir, LONG_LABEL, STOPPED_AT)
    monkeypatch.setattr(common, "now", lambda: STOPPED_AT)

    code, out, _ = run(["deliveries", "--limit", "5"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    # A title, a header and one line per reminder: no cell wraps.
    assert lines[0].startswith("Delivery log: the newest 5 of ")
    assert lines[1].split() == ["Due", "(local)", "Patient", "Reminder", "Status"]
    rows = lines[2:]
    assert len(rows) == 5
    assert all(LONG_LABEL in row and row.rstrip().endswith("cancelled") for row in rows)
    assert rows[0].startswith("2031-01-06 09:00")
    assert "Monitoring end" in rows[0]
    assert "History" not in out

    code, out, _ = run(["deliveries", "--limit", "2", "--history"], capsys)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    # Under each reminder, its changes: when (local), what, and the status.
    assert len(lines[2:]) == 4
    assert all(line.rstrip().endswith("cancelled") for line in lines[2:])
    assert [LONG_LABEL in line for line in lines[2:]] == [True, False, True, False]
    assert any("consent withdrawn" in line for line in lines[2:])
    assert any(line.startswith("  2026-04-09 10:00") for line in lines[2:])


def test_deliveries_csv_is_what_the_console_downloads(
    capsys: pytest.CaptureFixture[str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from bot.cli.deliveries import Filters, collect, write_csv
    from scheduler import teams
    from scheduler.db import session_factory

    monkeypatch.setattr(common, "now", lambda: ENROLLED_AT)
    assert run([*ENROLL[:1], "--label=-A1", *ENROLL[3:]], capsys)[0] == 0
    code, out, _ = run(["deliveries", "--format", "csv", "--kind", "labs_monthly"], capsys)
    assert code == 0

    async def written() -> str:
        engine = create_engine(f"sqlite+aiosqlite:///{workdir / 'remindbot.db'}")
        try:
            filters = Filters(
                kind="labs_monthly", active_since=ENROLLED_AT - timedelta(days=7), now=ENROLLED_AT
            )
            entries, _total = await collect(
                session_factory(engine), scope=teams.EVERY_TEAM, filters=filters
            )
        finally:
            await engine.dispose()
        text = io.StringIO()
        write_csv(entries, text)
        return text.getvalue()

    assert asyncio.run(written()) == out
    assert ",'-A1,labs_monthly," in out
