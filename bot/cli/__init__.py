"""The ``remindbot`` command line.

Each command lives in a module of this package, imported when the command runs or when
``--help`` lists it; those modules import their heavy parts (SQLAlchemy, Alembic,
python-telegram-bot, aiohttp) inside the command, so ``remindbot --help`` and
``remindbot plan`` start in a fraction of a second.

Every error ends in one line on stderr and an exit code (see ``EPILOG``), never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from bot.cli.common import USAGE_ERROR, Unreachable
from bot.i18n import gettext as _
from scheduler.errors import ValidationError

# name -> "module:attribute"; a module is imported only when its command is needed.
COMMANDS = {
    "course": "bot.cli.patients:course_group",
    "deliveries": "bot.cli.deliveries:deliveries_command",
    "doctor": "bot.cli.operations:doctor_command",
    "enroll": "bot.cli.patients:enroll_command",
    "export": "bot.cli.operations:export_command",
    "forget": "bot.cli.patients:forget_command",
    "grant": "bot.cli.roles:grant_command",
    "import": "bot.cli.patients:import_command",
    "invite": "bot.cli.patients:invite_command",
    "migrate": "bot.cli.operations:migrate_command",
    "patient": "bot.cli.patients:patient_command",
    "patients": "bot.cli.patients:patients_command",
    "pause": "bot.cli.patients:pause_command",
    "plan": "bot.cli.plan:plan_command",
    "resume": "bot.cli.patients:resume_command",
    "revoke": "bot.cli.roles:revoke_command",
    "run": "bot.cli.operations:run_command",
    "team": "bot.cli.teams:team_group",
}

EPILOG = _(
    "Exit codes: 0 done; 1 the database or Telegram could not be reached, or a check "
    "failed; 2 bad input or configuration (nothing was changed)."
)


class LazyGroup(click.Group):
    """A group whose commands are imported by name, when they are used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = COMMANDS[cmd_name].split(":")
        module = __import__(module_name, fromlist=[attribute])
        command = getattr(module, attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(
    cls=LazyGroup,
    help=_("Reminders for patients on alemtuzumab (Lemtrada) monitoring."),
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="remindbot", prog_name="remindbot")
def cli() -> None:
    """Reminders for patients on alemtuzumab monitoring."""


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: every error ends with one line on stderr and its exit code."""
    try:
        code = cli.main(args=argv, prog_name="remindbot", standalone_mode=False)
    except Unreachable as error:
        click.echo(f"remindbot: {error.format_message()}", err=True)
        code = error.exit_code
    except click.ClickException as error:
        click.echo(f"remindbot: {error.format_message()}", err=True)
        code = USAGE_ERROR
    except ValidationError as error:
        click.echo(f"remindbot: {error.render(_)}", err=True)
        code = USAGE_ERROR
    except click.Abort:
        code = 1
    except Exception as error:  # a bug: one line for the user, the traceback on request
        if os.environ.get("REMINDBOT_TRACEBACK") == "1":
            raise
        click.echo(
            "remindbot: "
            + _("unexpected error (%(error)s); run again with REMINDBOT_TRACEBACK=1 for details")
            % {"error": type(error).__name__},
            err=True,
        )
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
