#!/bin/sh
# Container entrypoint: bring the database to the current schema, then become the bot.
#
#   (no arguments) or "run"   remindbot migrate, then exec remindbot run
#   anything else             exec remindbot <arguments> (patients, enroll, grant, ...)
#
# exec replaces this shell, so remindbot runs as PID 1 and gets docker stop's SIGTERM itself.
# A failed migration ends the container with its exit code; the bot never starts on an old
# schema. Run one bot container per database when it migrates (Alembic takes no lock).
set -eu

if [ "$#" -eq 0 ]; then
    set -- run
fi

if [ "$1" = "run" ]; then
    remindbot migrate
fi

exec remindbot "$@"
