"""Patients from a CSV file: every row is checked before anything is stored.

Columns (header row required, comma- or semicolon-separated, UTF-8):

    label,locale,timezone,send_time,cbp,cervix,courses,prophylaxis_days,allow_early_course,
    team,coordinator

``label``, ``locale``, ``timezone`` and ``courses`` are required; ``courses`` lists
``DATE[:DAYS]`` separated by spaces or ``|``; ``cbp``, ``cervix`` and ``allow_early_course``
take yes/no (also true/false, 1/0); ``cervix`` (the yearly cervical screening line) defaults
to the ``cbp`` answer, ``send_time`` to 09:00 and ``prophylaxis_days`` to 30. ``team`` is the
care team's name (default: the import's ``--team``, or the clinic's only team);
``coordinator`` the Telegram user id of the patient's own coordinator (default: none, the
team's coordinators are told).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

from scheduler.errors import N_, ValidationError
from scheduler.protocol import DEFAULT_PROPHYLAXIS_DAYS
from scheduler.store import Enrolment, check_label
from scheduler.validation import build_profile, check_locale, parse_course

REQUIRED = ("label", "locale", "timezone", "courses")
OPTIONAL = (
    "send_time",
    "cbp",
    "cervix",
    "prophylaxis_days",
    "allow_early_course",
    "team",
    "coordinator",
)
_YES = {"yes", "y", "true", "1", "ja", "oui", "si", "sí"}
_NO = {"no", "n", "false", "0", "nein", "non", ""}
_COURSE_SEPARATOR = re.compile(r"[\s|]+")


class CsvFormatError(ValidationError):
    """The file as a whole cannot be read; no row was looked at."""


class MissingColumns(CsvFormatError):
    template = N_("The file has no column %(columns)s. Required: %(required)s.")


class UnknownColumns(CsvFormatError):
    template = N_("Unknown column %(columns)s. Allowed: %(allowed)s.")


class EmptyFile(CsvFormatError):
    template = N_("The file has no header row.")


class NotUtf8(CsvFormatError):
    template = N_("The file is not UTF-8 text. Save it as CSV UTF-8 and try again.")


class UnreadableCsv(CsvFormatError):
    template = N_("Line %(line)d cannot be read as CSV: %(reason)s.")


class ExtraFields(ValidationError):
    template = N_(
        "The row has %(count)d fields, the header %(expected)d: is a value missing its quotes?"
    )


class DuplicateInFile(ValidationError):
    template = N_("The label %(label)s is already used on line %(line)d.")


class InvalidFlag(ValidationError):
    template = N_("%(column)s must be yes or no, not %(value)s.")


class InvalidNumber(ValidationError):
    template = N_("%(column)s must be a whole number, not %(value)s.")


class MissingValue(ValidationError):
    template = N_("%(column)s is empty.")


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    label: str
    error: ValidationError


@dataclass(frozen=True, slots=True)
class ParsedFile:
    enrolments: list[tuple[int, Enrolment]]  # (line number, enrolment)
    errors: list[RowError]


def _flag(value: str, column: str) -> bool:
    text = value.strip().lower()
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise InvalidFlag(column=column, value=value)


def _number(value: str, column: str, default: int) -> int:
    text = value.strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit()):
        raise InvalidNumber(column=column, value=value)
    return int(text)


def _required(row: dict[str, str], column: str) -> str:
    value = (row.get(column) or "").strip()
    if not value:
        raise MissingValue(column=column)
    return value


def parse_row(row: dict[str, str], *, locales: Collection[str]) -> Enrolment:
    """One validated enrolment, or the first ValidationError of the row."""
    label = check_label(_required(row, "label"))
    locale = check_locale(_required(row, "locale"), locales)
    courses = [
        parse_course(text, number=number)
        for number, text in enumerate(_COURSE_SEPARATOR.split(_required(row, "courses")), 1)
        if text
    ]
    profile, _warnings = build_profile(
        courses=courses,
        timezone=_required(row, "timezone"),
        send_time=(row.get("send_time") or "").strip() or None,
        cbp=_flag(row.get("cbp") or "", "cbp"),
        prophylaxis_days=_number(
            row.get("prophylaxis_days") or "", "prophylaxis_days", DEFAULT_PROPHYLAXIS_DAYS
        ),
        allow_early_course=_flag(row.get("allow_early_course") or "", "allow_early_course"),
    )
    cervix = (row.get("cervix") or "").strip()
    return Enrolment(
        label=label,
        locale=locale,
        profile=profile,
        cervix=_flag(cervix, "cervix") if cervix else None,
        coordinator_id=_number(row.get("coordinator") or "", "coordinator", 0) or None,
        team_name=(row.get("team") or "").strip() or None,
    )


def _rows(data: bytes) -> Iterator[tuple[int, dict[str, str], int]]:
    """(line number, row, number of fields beyond the header's) for each non-empty row."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NotUtf8() from None
    header = text.splitlines()[0] if text.strip() else ""
    if not header.strip():
        raise EmptyFile()
    delimiter = ";" if header.count(";") > header.count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    columns = [name.strip().lower() for name in reader.fieldnames or []]
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        raise MissingColumns(columns=", ".join(missing), required=", ".join(REQUIRED))
    unknown = [name for name in columns if name not in REQUIRED + OPTIONAL]
    if unknown:
        raise UnknownColumns(columns=", ".join(unknown), allowed=", ".join(REQUIRED + OPTIONAL))
    reader.fieldnames = columns
    try:
        for row in reader:
            extra = row.pop(None, None)  # DictReader puts surplus fields under None
            values = {k: v for k, v in row.items() if isinstance(v, str)}
            if extra or any(value.strip() for value in values.values()):
                yield reader.line_num, values, len(extra or ())
    except csv.Error as error:
        raise UnreadableCsv(line=reader.line_num, reason=str(error)) from None


def parse_file(
    data: bytes,
    *,
    locales: Collection[str],
    progress: Callable[[int], None] = lambda _: None,
) -> ParsedFile:
    """Every row checked; duplicate labels within the file are errors too."""
    enrolments: list[tuple[int, Enrolment]] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for line, row, extra in _rows(data):
        label = (row.get("label") or "").strip()
        try:
            if extra:
                raise ExtraFields(count=len(row) + extra, expected=len(row))
            enrolment = parse_row(row, locales=locales)
            if enrolment.label in seen:
                raise DuplicateInFile(label=enrolment.label, line=seen[enrolment.label])
            seen[enrolment.label] = line
            enrolments.append((line, enrolment))
        except ValidationError as error:
            errors.append(RowError(line, label, error))
        progress(1)
    return ParsedFile(enrolments, errors)
