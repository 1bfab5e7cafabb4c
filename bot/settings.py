"""Settings from the environment (and an optional ``.env`` file), checked at start."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.i18n import available_locales
from scheduler.validation import parse_timezone

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///remindbot.db"
TELEGRAM_API_BASE_URL = "https://api.telegram.org/bot"

_TOKEN = re.compile(r"\d+:[A-Za-z0-9_-]+", re.ASCII)
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}", re.ASCII)
_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,31}", re.ASCII)
_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the variable."""


class Settings(BaseSettings):
    # An empty variable counts as unset: the env example, copied as it is, must work.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=False, env_ignore_empty=True
    )

    telegram_bot_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("TELEGRAM_BOT_TOKEN")
    )
    database_url: str = Field(DEFAULT_DATABASE_URL, validation_alias=AliasChoices("DATABASE_URL"))
    telegram_api_base_url: str = Field(
        TELEGRAM_API_BASE_URL, validation_alias=AliasChoices("TELEGRAM_API_BASE_URL")
    )
    admin_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("REMINDBOT_ADMIN_IDS")
    )
    default_locale: str = Field("en", validation_alias=AliasChoices("REMINDBOT_DEFAULT_LOCALE"))
    # The zone coordinators and staff read times in until they set their own (/timezone).
    default_timezone: str = Field(
        "UTC", validation_alias=AliasChoices("REMINDBOT_DEFAULT_TIMEZONE")
    )
    webhook_url: str | None = Field(None, validation_alias=AliasChoices("REMINDBOT_WEBHOOK_URL"))
    webhook_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("REMINDBOT_WEBHOOK_SECRET")
    )
    # The one web server: /healthz, /metrics, the webhook (the path of REMINDBOT_WEBHOOK_URL)
    # and the console. Port 0: any free port (logged). Listen on 0.0.0.0 for a scraper, a
    # load balancer or a reverse proxy outside the host or container.
    http_listen: str = Field("127.0.0.1", validation_alias=AliasChoices("REMINDBOT_HTTP_LISTEN"))
    http_port: int = Field(
        8080, ge=0, le=65535, validation_alias=AliasChoices("REMINDBOT_HTTP_PORT")
    )
    # The old names of the two above, read for one more release (see RENAMED).
    health_listen: str | None = Field(
        None, validation_alias=AliasChoices("REMINDBOT_HEALTH_LISTEN")
    )
    health_port: int | None = Field(
        None, ge=0, le=65535, validation_alias=AliasChoices("REMINDBOT_HEALTH_PORT")
    )
    _port_variable: str = PrivateAttr("REMINDBOT_HTTP_PORT")
    # No longer read (see RETIRED): set, they stop the start.
    webhook_listen: str | None = Field(
        None, validation_alias=AliasChoices("REMINDBOT_WEBHOOK_LISTEN")
    )
    webhook_port: str | None = Field(None, validation_alias=AliasChoices("REMINDBOT_WEBHOOK_PORT"))
    # Where staff open the web console (https://bot.example.org): /web links start with it.
    public_url: str | None = Field(None, validation_alias=AliasChoices("REMINDBOT_PUBLIC_URL"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=AliasChoices("REMINDBOT_LOG_LEVEL")
    )
    log_format: Literal["plain", "json"] = Field(
        "plain", validation_alias=AliasChoices("REMINDBOT_LOG_FORMAT")
    )
    late_window_hours: int = Field(
        72, gt=0, le=24 * 14, validation_alias=AliasChoices("REMINDBOT_LATE_WINDOW_HOURS")
    )
    bot_username: str | None = Field(None, validation_alias=AliasChoices("REMINDBOT_BOT_USERNAME"))
    alert_chat_id: int | None = Field(
        None, validation_alias=AliasChoices("REMINDBOT_ALERT_CHAT_ID")
    )
    tick_seconds: float = Field(
        5.0, ge=0.5, le=300, validation_alias=AliasChoices("REMINDBOT_TICK_SECONDS")
    )
    # Messages per second overall: Telegram's 30, more for a local Bot API server or paid
    # broadcasts; 0 turns the limit off (one message per second per chat always applies).
    rate_limit: float = Field(
        30.0, ge=0, le=1000, validation_alias=AliasChoices("REMINDBOT_RATE_LIMIT")
    )

    # The clinic's own words in the consent text: whom to contact, how long data is kept.
    clinic_contact: str | None = Field(
        None, max_length=200, validation_alias=AliasChoices("REMINDBOT_CLINIC_CONTACT")
    )
    data_retention: str | None = Field(
        None, max_length=300, validation_alias=AliasChoices("REMINDBOT_DATA_RETENTION")
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("expected the token from @BotFather, like 123456:ABC-DEF…")
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in _DRIVERS:
            raise ValueError(
                "expected sqlite+aiosqlite:///path.db or postgresql+asyncpg://user@host/db"
            )
        return f"{_DRIVERS[scheme]}://{rest}"

    @field_validator("telegram_api_base_url", "webhook_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError("expected an http:// or https:// URL")
        return value

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("default_locale")
    @classmethod
    def _shipped_locale(cls, value: str) -> str:
        if value not in available_locales():
            raise ValueError(f"expected one of {', '.join(sorted(available_locales()))}")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        # A scheduler ValidationError is a ValueError: its message names the value.
        return parse_timezone(value).key

    @field_validator("webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _SECRET.fullmatch(value.get_secret_value()):
            raise ValueError("expected 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("bot_username")
    @classmethod
    def _username_shape(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.removeprefix("@")
            if not _USERNAME.fullmatch(value):
                raise ValueError("expected the bot's username, like remindbot_clinic_bot")
        return value

    @field_validator("webhook_listen", "webhook_port")
    @classmethod
    def _retired(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(
                "no longer used: the webhook is served by the bot's one web server, "
                "with /healthz and /metrics; set REMINDBOT_HTTP_PORT (and "
                "REMINDBOT_HTTP_LISTEN) instead, and remove this variable"
            )
        return value

    @model_validator(mode="after")
    def _renamed(self) -> Settings:
        """The old names count where the new ones are not set."""
        if self.health_port is not None and "http_port" not in self.model_fields_set:
            self.http_port = self.health_port
            self._port_variable = "REMINDBOT_HEALTH_PORT"
        if self.health_listen is not None and "http_listen" not in self.model_fields_set:
            self.http_listen = self.health_listen
        return self

    @model_validator(mode="after")
    def _webhook_pair(self) -> Settings:
        if (self.webhook_url is None) != (self.webhook_secret is None):
            raise ValueError(
                "REMINDBOT_WEBHOOK_URL and REMINDBOT_WEBHOOK_SECRET must be set together"
            )
        return self

    def renamed_in_use(self) -> list[tuple[str, str]]:
        """(old name, new name) of each renamed variable that is set, to warn about."""
        return [
            (old, new) for old, new in RENAMED.items() if getattr(self, _FIELDS[old]) is not None
        ]

    @property
    def http_port_variable(self) -> str:
        """The variable the HTTP port came from, for messages about it."""
        return self._port_variable

    @property
    def late_window(self) -> timedelta:
        return timedelta(hours=self.late_window_hours)

    def token(self) -> str:
        """The bot token; raises SettingsError when it is not set."""
        if self.telegram_bot_token is None:
            raise SettingsError(
                "TELEGRAM_BOT_TOKEN is not set: create a bot with @BotFather in Telegram "
                "and set TELEGRAM_BOT_TOKEN to the token it gives you."
            )
        return self.telegram_bot_token.get_secret_value()


_VARIABLES = {
    name: next(iter(field.validation_alias.choices))  # type: ignore[union-attr]
    for name, field in Settings.model_fields.items()
}
_FIELDS = {variable: name for name, variable in _VARIABLES.items()}
# Old name -> new name: still read, with a warning at start, until the next release.
RENAMED: Final = {
    "REMINDBOT_HEALTH_PORT": "REMINDBOT_HTTP_PORT",
    "REMINDBOT_HEALTH_LISTEN": "REMINDBOT_HTTP_LISTEN",
}
# No longer read at all: set, they stop the start with a line saying what to set instead.
RETIRED: Final = frozenset({"REMINDBOT_WEBHOOK_LISTEN", "REMINDBOT_WEBHOOK_PORT"})


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment; a bad value raises SettingsError naming its variable."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        variable = _VARIABLES.get(field, field)
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{variable}: {message}" if variable else message) from None
