"""Maintain the translation catalogs in ``locales/``.

    python scripts/catalogs.py extract   # sources -> locales/messages.pot
    python scripts/catalogs.py update    # messages.pot -> every messages.po, plural forms included
    python scripts/catalogs.py check     # what ``update`` would change in the plural forms

``pybabel update`` keeps a catalog's ``Plural-Forms`` header as it is, so when a Babel release
brings new CLDR plural rules (French, Spanish, Italian and Portuguese gained a "many" form in
CLDR 47) the catalogs silently keep the old ones. ``update`` sets the header to what the
installed Babel gives and moves each translation to the form that now covers its numbers.
A form that did not exist before starts as a copy of the old form that covered most of its
numbers and the message is marked fuzzy: the catalog test lists it until a translator has
written that form and removed the mark.
"""

from __future__ import annotations

import argparse
import gettext
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import babel
from babel.messages.catalog import Catalog
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
LOCALES = ROOT / "locales"
TEMPLATE = LOCALES / "messages.pot"
EXTRACT = [
    "pybabel", "extract", "-F", "babel.cfg", "-k", "N_", "-c", "TRANSLATORS:",
    "--sort-by-file", "--no-wrap", "--project", "remindbot",
    "-o", "locales/messages.pot", "bot", "scheduler",
]  # fmt: skip
UPDATE = [
    "pybabel", "update", "-i", "locales/messages.pot", "-d", "locales", "-D", "messages",
    "--no-wrap", "--ignore-obsolete",
]  # fmt: skip
UPDATE_COMMAND = "python scripts/catalogs.py update"
# Numbers on which two plural rules are compared: every rule in CLDR decides on the last
# digits, on the hundreds, or on multiples of a million.
SAMPLES = (*range(0, 1200), 10**6, 2 * 10**6, 10**6 + 1, 10**6 + 2, 10**7, 10**9, 10**12)


@dataclass(frozen=True)
class PluralChange:
    """A catalog whose plural rule differs from the one the installed Babel gives."""

    locale: str
    path: Path
    old: str
    new: str
    # Written differently, but every number gets the same form: only the header changes.
    same_numbers: bool

    def describe(self) -> str:
        return (
            f"{self.locale}: the catalog says {self.old!r}, Babel {babel.__version__} "
            f"(CLDR) says {self.new!r}"
        )


def catalog_paths() -> list[tuple[str, Path]]:
    """Every translated catalog as (locale, path), sorted by locale."""
    found = sorted(LOCALES.glob("*/LC_MESSAGES/messages.po"))
    return [(path.parent.parent.name, path) for path in found]


def read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as file:
        return read_po(file, locale=locale)


def rule(expression: str) -> Callable[[int], int]:
    """A gettext plural expression as a function of n."""
    return gettext.c2py(expression)


def same_rule(a: str, b: str, a_forms: int, b_forms: int) -> bool:
    """Whether two plural rules pick the same form for every sample number."""
    if a_forms != b_forms:
        return False
    first, second = rule(a), rule(b)
    return all(first(n) == second(n) for n in SAMPLES)


def plural_change(locale: str, path: Path) -> PluralChange | None:
    """How the catalog's plural rule differs from CLDR's for its locale, if it does."""
    catalog = read(path, locale)
    expected = get_plural(locale)
    old = f"nplurals={catalog.num_plurals}; plural={catalog.plural_expr};"
    new = f"nplurals={expected.num_plurals}; plural={expected.plural_expr};"
    if old == new:
        return None
    same = same_rule(
        catalog.plural_expr, expected.plural_expr, catalog.num_plurals, expected.num_plurals
    )
    return PluralChange(locale, path, old, new, same)


def form_map(old: str, new: str, new_forms: int) -> tuple[list[int], set[int]]:
    """For each new form, the old form that covered most of its numbers, and the new forms
    that are not simply an old form renumbered (they need a translator)."""
    old_rule, new_rule = rule(old), rule(new)
    covered: list[Counter[int]] = [Counter() for _ in range(new_forms)]
    for n in SAMPLES:
        covered[new_rule(n)][old_rule(n)] += 1
    sources = [counts.most_common(1)[0][0] if counts else 0 for counts in covered]
    owners = Counter(sources)
    review = {
        form
        for form, counts in enumerate(covered)
        if len(counts) != 1 or owners[sources[form]] != 1
    }
    return sources, review


def apply_plural_rule(change: PluralChange) -> list[str]:
    """Rewrite the catalog with the new rule; returns the messages marked for review."""
    catalog = read(change.path, change.locale)
    expected = get_plural(change.locale)
    sources, review = form_map(catalog.plural_expr, expected.plural_expr, expected.num_plurals)
    headers = [
        (name, change.new if name.lower() == "plural-forms" else value)
        for name, value in catalog.mime_headers
    ]
    if not any(name.lower() == "plural-forms" for name, _ in headers):
        headers.append(("Plural-Forms", change.new))
    marked = []
    for message in catalog:
        if not message.id or not message.pluralizable:
            continue
        old_forms = list(message.string) if isinstance(message.string, tuple | list) else []
        if not old_forms:
            continue
        message.string = tuple(
            old_forms[source] if source < len(old_forms) else "" for source in sources
        )
        if review and any(message.string):
            message.flags.add("fuzzy")
            marked.append(str(message.id[0]))
    catalog.mime_headers = headers
    with change.path.open("wb") as file:
        # width=None is what pybabel's --no-wrap passes; Babel's annotation says int.
        write_po(file, catalog, width=None, ignore_obsolete=True)  # type: ignore[arg-type]
    return marked


def run(command: Iterable[str]) -> None:
    subprocess.run(list(command), cwd=ROOT, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["extract", "update", "check"])
    action = parser.parse_args(argv).action
    if action == "extract":
        run(EXTRACT)
        return 0
    if action == "update":
        run(UPDATE)
    changes = [c for locale, path in catalog_paths() if (c := plural_change(locale, path))]
    if action == "check":
        changes = [change for change in changes if not change.same_numbers]
    for change in changes:
        print(change.describe())
        if action == "update":
            for message in apply_plural_rule(change):
                print(f"  fuzzy, translate the new form: {message!r}")
    if action == "check" and changes:
        print(f"run: {UPDATE_COMMAND}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
