"""A fake Telegram Bot API server on 127.0.0.1 that python-telegram-bot talks real HTTP to.

Point PTB at it with `base_url=server.base_url`; act as users with `send_text` and
`press_button`; inspect what the bot did with `calls` and `messages(chat_id)`; wait for it with
`wait_for` / `wait_for_message` instead of sleeping. Faults (`inject`) and Telegram's flood limits
(`enable_rate_limit`) can be switched on per method and per chat.

Requests are parsed the way PTB 22 sends them: form-urlencoded, or multipart/form-data when files
are attached, with every non-string value JSON-encoded (so `"42"` is the int 42 and
`reply_markup` a JSON object); JSON bodies are accepted too.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import math
import re
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from tests.network_guard import is_loopback_host

Clock = Callable[[], float]
JSONDict = dict[str, Any]

TOKEN_PATTERN = re.compile(r"[0-9]+:[A-Za-z0-9_-]+")
# Telegram's own limits for messages: about 30 per second overall and 1 per second per chat.
DEFAULT_GLOBAL_PER_SECOND = 30
DEFAULT_PER_CHAT_PER_SECOND = 1
RATE_LIMITED_METHODS = frozenset(
    {"sendMessage", "sendPhoto", "sendDocument", "copyMessage", "forwardMessage"}
)
SECRET_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
COMMAND_PATTERN = re.compile(r"[a-z0-9_]{1,32}")
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64

# Parameters that PTB sends as plain strings; every other value is JSON-encoded.
_STRING_PARAMETERS = frozenset(
    [
        "action",
        "business_connection_id",
        "callback_query_id",
        "caption",
        "description",
        "document",
        "emoji",
        "inline_message_id",
        "ip_address",
        "language_code",
        "message_effect_id",
        "name",
        "parse_mode",
        "photo",
        "secret_token",
        "short_description",
        "text",
        "title",
        "url",
    ]
)
# Parameters that hold JSON objects or arrays, even when a JSON body carries them as strings.
_JSON_PARAMETERS = frozenset(
    [
        "allowed_updates",
        "caption_entities",
        "commands",
        "entities",
        "link_preview_options",
        "media",
        "reply_markup",
        "reply_parameters",
        "scope",
    ]
)
# The tags Telegram's HTML parse mode accepts.
_HTML_TAGS = frozenset(
    [
        "a",
        "b",
        "blockquote",
        "code",
        "del",
        "em",
        "i",
        "ins",
        "pre",
        "s",
        "span",
        "strike",
        "strong",
        "tg-emoji",
        "tg-spoiler",
        "u",
    ]
)
_HTML_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s[^<>]*)?)>")
_HTML_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]+|#x[0-9A-Fa-f]+);")
_MARKDOWN_V2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MARKDOWN_V2_MARKERS = frozenset("*_~|[")
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)


class WaitTimeout(AssertionError):
    """Something a test waited for did not happen in time."""


class ManualClock:
    """A monotonic clock that moves only when told to: `clock.advance(1.5)`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        self.now += seconds


@dataclass(frozen=True)
class FakeUser:
    """A Telegram user who talks to the bot in a private chat whose id is the user's id."""

    id: int
    first_name: str = "Alice"
    language_code: str | None = "en"
    username: str | None = None
    last_name: str | None = None

    def to_api(self) -> JSONDict:
        data: JSONDict = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        for name in ("last_name", "username", "language_code"):
            if (value := getattr(self, name)) is not None:
                data[name] = value
        return data

    def private_chat(self) -> JSONDict:
        data: JSONDict = {"id": self.id, "type": "private", "first_name": self.first_name}
        for name in ("last_name", "username"):
            if (value := getattr(self, name)) is not None:
                data[name] = value
        return data


@dataclass(frozen=True)
class UploadedFile:
    """A file the bot uploaded: the multipart field it came in, its name, type and bytes."""

    field: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(frozen=True)
class Button:
    """One button of a keyboard, with its position."""

    text: str
    callback_data: str | None
    url: str | None
    row: int
    column: int
    raw: JSONDict


@dataclass(frozen=True)
class Edit:
    """The state of a message right after one edit."""

    method: str
    time: float
    text: str | None
    caption: str | None
    reply_markup: JSONDict | None
    params: JSONDict


@dataclass
class SentMessage:
    """A message the bot sent, in its current state (edits applied); `edits` keeps the history.

    `text` and `caption` are what the user sees (HTML/MarkdownV2 markup removed, as Telegram
    returns them); `raw_text` is the text or caption exactly as the bot sent it.
    """

    chat_id: int
    message_id: int
    date: int
    method: str
    time: float
    chat: JSONDict
    sender: JSONDict
    params: JSONDict
    text: str | None = None
    caption: str | None = None
    raw_text: str | None = None
    parse_mode: str | None = None
    reply_markup: JSONDict | None = None
    file: UploadedFile | None = None
    media: JSONDict = field(default_factory=dict)
    edits: list[Edit] = field(default_factory=list)
    edit_date: int | None = None
    deleted: bool = False

    @property
    def content(self) -> str | None:
        """The text, or the caption of a photo or document."""
        return self.text if self.text is not None else self.caption

    @property
    def keyboard(self) -> list[list[Button]]:
        """The rows of the inline keyboard (or of the reply keyboard) attached to the message."""
        markup = self.reply_markup or {}
        rows = markup.get("inline_keyboard") or markup.get("keyboard") or []
        return [
            [_button(raw, row, column) for column, raw in enumerate(buttons)]
            for row, buttons in enumerate(rows)
        ]

    @property
    def buttons(self) -> list[Button]:
        return [button for row in self.keyboard for button in row]

    @property
    def callback_data(self) -> list[str]:
        return [b.callback_data for b in self.buttons if b.callback_data is not None]

    def button(self, text: str) -> Button:
        """The button labelled `text`."""
        for candidate in self.buttons:
            if candidate.text == text:
                return candidate
        labels = [b.text for b in self.buttons]
        raise LookupError(f"no button {text!r} on message {self.message_id}; buttons: {labels}")

    def to_api(self) -> JSONDict:
        data: JSONDict = {
            "message_id": self.message_id,
            "from": self.sender,
            "chat": self.chat,
            "date": self.date,
        }
        if self.edit_date is not None:
            data["edit_date"] = self.edit_date
        if self.text is not None:
            data["text"] = self.text
        data.update(self.media)
        if self.caption is not None:
            data["caption"] = self.caption
        # Telegram echoes inline keyboards only; reply keyboards live on the client.
        if self.reply_markup and "inline_keyboard" in self.reply_markup:
            data["reply_markup"] = self.reply_markup
        return data


def _button(raw: Any, row: int, column: int) -> Button:
    if isinstance(raw, str):  # reply keyboards may be plain strings
        raw = {"text": raw}
    return Button(
        text=str(raw.get("text", "")),
        callback_data=raw.get("callback_data"),
        url=raw.get("url"),
        row=row,
        column=column,
        raw=raw,
    )


@dataclass(frozen=True)
class Fault:
    """What the server answers instead of doing its job; build one with the class methods.

    `error_code` None means "answer normally", which together with `delay` makes a slow answer.
    """

    error_code: int | None
    description: str = ""
    retry_after_seconds: int | None = None
    delay: float = 0.0
    # With a delay and no error: the request takes effect before the delay (True) or only if the
    # client is still waiting once the delay is over (False).
    applied_first: bool = True

    @classmethod
    def retry_after(cls, seconds: int) -> Fault:
        """429, as Telegram answers a flood: PTB raises RetryAfter."""
        return cls(429, f"Too Many Requests: retry after {seconds}", retry_after_seconds=seconds)

    @classmethod
    def blocked(cls) -> Fault:
        """403 for a user who blocked the bot: PTB raises Forbidden."""
        return cls(403, "Forbidden: bot was blocked by the user")

    @classmethod
    def deactivated(cls) -> Fault:
        """403 for a deleted account: PTB raises Forbidden."""
        return cls(403, "Forbidden: user is deactivated")

    @classmethod
    def chat_not_found(cls) -> Fault:
        """400: PTB raises BadRequest("Chat not found")."""
        return cls(400, "Bad Request: chat not found")

    @classmethod
    def bad_request(cls, reason: str) -> Fault:
        """400 "Bad Request: <reason>": PTB raises BadRequest."""
        return cls(400, f"Bad Request: {reason}")

    @classmethod
    def server_error(cls) -> Fault:
        """500: PTB raises NetworkError."""
        return cls(500, "Internal Server Error")

    @classmethod
    def slow(cls, seconds: float, *, applied_first: bool = True) -> Fault:
        """Answer normally after `seconds`; a shorter client read timeout makes PTB raise TimedOut.

        By default the request takes effect at once (a message is sent although the client gave
        up, as happens with Telegram); with `applied_first=False` it takes effect only if the
        client is still connected when the delay is over.
        """
        return cls(None, delay=seconds, applied_first=applied_first)


@dataclass
class Injection:
    """A fault armed for a method (or "*") and maybe one chat; `times` None: until cleared."""

    method: str
    fault: Fault
    chat_id: int | str | None
    times: int | None
    hits: int = 0

    def matches(self, method: str, chat_id: int | str | None) -> bool:
        if self.method != "*" and self.method.lower() != method.lower():
            return False
        return self.chat_id is None or self.chat_id == chat_id

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


@dataclass
class ApiCall:
    """One HTTP request to the Bot API, recorded on arrival and completed when answered."""

    seq: int
    method: str
    params: JSONDict
    files: dict[str, UploadedFile]
    token: str
    chat_id: int | str | None
    time: float
    status: int | None = None
    # "pending", "ok", "retry_after", "rate_limited", "forbidden", "bad_request", "not_found",
    # "unauthorized", "conflict", "server_error" or "cancelled" (client went away first).
    outcome: str = "pending"
    description: str | None = None
    retry_after: int | None = None
    result: Any = None
    fault: Fault | None = None
    finished: float | None = None
    disconnected: bool = False

    @property
    def done(self) -> bool:
        return self.outcome != "pending"

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class Delivery:
    """One attempt to hand an update to the bot."""

    via: str  # "getUpdates" or "webhook"
    time: float
    status: int | None = None
    error: str | None = None


@dataclass
class FakeUpdate:
    """An update the server queued for the bot, and how it was handed over."""

    update_id: int
    kind: str
    payload: JSONDict
    time: float
    deliveries: list[Delivery] = field(default_factory=list)
    confirmed: bool = False
    # Delivered whatever the bot's allowed_updates say (see `send_update`).
    unsolicited: bool = False

    @property
    def message(self) -> JSONDict | None:
        value = self.payload.get("message")
        return value if isinstance(value, dict) else None


@dataclass
class CallbackPress:
    """A button press; `answer` holds the answerCallbackQuery parameters once the bot answered."""

    id: str
    user: FakeUser
    message: SentMessage
    data: str
    forged: bool
    update: FakeUpdate
    answer: JSONDict | None = None
    answered_at: float | None = None


@dataclass
class Webhook:
    url: str
    secret_token: str | None
    max_connections: int
    allowed_updates: list[str] | None
    set_at: float
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class RateLimit:
    """Flood-limit enforcement for the sending methods, and its counters."""

    enabled: bool = False
    global_per_second: int = DEFAULT_GLOBAL_PER_SECOND
    per_chat_per_second: int = DEFAULT_PER_CHAT_PER_SECOND
    accepted: int = 0
    rejected: int = 0
    _recent: deque[float] = field(default_factory=deque)
    _recent_by_chat: dict[int | str, deque[float]] = field(default_factory=dict)

    def retry_after(self, chat_id: int | str | None, now: float) -> int | None:
        """None if a send to the chat may go out at `now`, else the seconds to wait (counted)."""
        if not self.enabled:
            return None
        in_chat = self._window(chat_id)
        for window in (self._recent, in_chat):
            while window and window[0] <= now - 1.0:
                window.popleft()
        waits = []
        if len(self._recent) >= self.global_per_second:
            waits.append(self._recent[0] + 1.0 - now)
        if len(in_chat) >= self.per_chat_per_second:
            waits.append(in_chat[0] + 1.0 - now)
        if not waits:
            return None
        self.rejected += 1
        return max(1, math.ceil(max(waits)))

    def record(self, chat_id: int | str | None, now: float) -> None:
        """Count a send that went out."""
        self.accepted += 1
        self._recent.append(now)
        self._window(chat_id).append(now)

    def _window(self, chat_id: int | str | None) -> deque[float]:
        return self._recent_by_chat.setdefault(chat_id if chat_id is not None else "", deque())


class _ApiError(Exception):
    def __init__(
        self,
        error_code: int,
        description: str,
        *,
        retry_after: int | None = None,
        outcome: str | None = None,
    ) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after
        self.outcome = outcome or _outcome(error_code)


def _outcome(status: int) -> str:
    return {
        200: "ok",
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        409: "conflict",
        429: "retry_after",
    }.get(status, "server_error" if status >= 500 else f"http_{status}")


def _bad_request(reason: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {reason}")


def _decode_value(name: str, value: str) -> Any:
    if name in _STRING_PARAMETERS:
        return value
    try:
        return json.loads(value, parse_constant=_reject_constant)
    except ValueError:
        return value


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


async def _read_parameters(request: web.Request) -> tuple[JSONDict, dict[str, UploadedFile]]:
    params: JSONDict = {name: _decode_value(name, value) for name, value in request.query.items()}
    files: dict[str, UploadedFile] = {}
    if request.content_type == "application/json":
        body = await request.read()
        if body:
            try:
                decoded = json.loads(body)
            except ValueError as error:
                raise _bad_request(f"can't parse JSON body: {error}") from error
            if not isinstance(decoded, dict):
                raise _bad_request("the JSON body must be an object")
            for name, value in decoded.items():
                if name in _JSON_PARAMETERS and isinstance(value, str):
                    value = _decode_value(name, value)
                params[name] = value
        return params, files
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for name, value in form.items():
            if isinstance(value, web.FileField):
                try:
                    data = value.file.read()
                finally:
                    value.file.close()
                files[name] = UploadedFile(name, value.filename, value.content_type, data)
            elif isinstance(value, str):
                params[name] = _decode_value(name, value)
    # Media groups point at their parts with attach://<name>.
    for name, value in list(params.items()):
        if isinstance(value, str) and value.startswith("attach://"):
            attached = files.get(value.removeprefix("attach://"))
            if attached is not None:
                files.setdefault(name, attached)
    return params, files


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode())


def _render_html(text: str) -> str:
    """The text a user sees for an HTML message; raises like Telegram on markup it rejects."""
    shown: list[str] = []
    open_tags: list[str] = []
    position = 0
    while position < len(text):
        character = text[position]
        if character == "<":
            tag = _HTML_TAG.match(text, position)
            at = _byte_offset(text, position)
            if tag is None:
                raise _bad_request(
                    f"can't parse entities: Unsupported start tag at byte offset {at}"
                )
            name = tag.group(2).lower()
            if name not in _HTML_TAGS:
                raise _bad_request(
                    f'can\'t parse entities: Unsupported start tag "{name}" at byte offset {at}'
                )
            if tag.group(1):
                if not open_tags or open_tags[-1] != name:
                    raise _bad_request(
                        f"can't parse entities: Unmatched end tag at byte offset {at}, expected \""
                        f'</{open_tags[-1] if open_tags else ""}>", found "</{name}>"'
                    )
                open_tags.pop()
            else:
                open_tags.append(name)
            position = tag.end()
            continue
        if character == "&" and (entity := _HTML_ENTITY.match(text, position)):
            shown.append(html.unescape(entity.group(0)))
            position = entity.end()
            continue
        shown.append(character)
        position += 1
    if open_tags:
        raise _bad_request(
            "can't parse entities: Can't find end tag corresponding to start tag "
            f'"{open_tags[-1]}"'
        )
    return "".join(shown)


def _render_markdown_v2(text: str) -> str:
    """An approximation of Telegram's MarkdownV2: unescaped reserved characters are rejected."""
    shown: list[str] = []
    position = 0
    in_code = in_pre = in_url = False
    while position < len(text):
        character = text[position]
        if character == "\\":
            if position + 1 == len(text):
                raise _bad_request("can't parse entities: Can't find end of the entity")
            if not in_url:
                shown.append(text[position + 1])
            position += 2
            continue
        if text.startswith("```", position):
            in_pre = not in_pre
            position += 3
            continue
        if in_pre or (in_code and character != "`"):
            shown.append(character)
            position += 1
            continue
        if character == "`":
            in_code = not in_code
        elif in_url:
            in_url = character != ")"
        elif text.startswith("](", position):
            in_url = True
            position += 1
        elif character == ">" and (position == 0 or text[position - 1] == "\n"):
            pass  # a block quote
        elif character in _MARKDOWN_V2_MARKERS:
            pass
        elif character in _MARKDOWN_V2_RESERVED:
            raise _bad_request(
                f"can't parse entities: Character '{character}' is reserved and must be escaped "
                "with the preceding '\\'"
            )
        else:
            shown.append(character)
        position += 1
    return "".join(shown)


def _render(text: str, parse_mode: str | None) -> str:
    mode = (parse_mode or "").lower()
    if mode == "html":
        return _render_html(text)
    if mode == "markdownv2":
        return _render_markdown_v2(text)
    return text


def _check_reply_markup(markup: Any) -> JSONDict | None:
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad_request("can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        return markup
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not button.get("text"):
                raise _bad_request("can't parse inline keyboard button: Text must be non-empty")
            if not set(button) - {"text"}:
                raise _bad_request("text buttons are unallowed in the inline keyboard")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA_BYTES:
                raise _bad_request("BUTTON_DATA_INVALID")
    return markup


def _image_size(data: bytes) -> tuple[int, int]:
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return 1, 1


def _scope_key(scope: Any, language_code: Any) -> tuple[str, str]:
    scope = scope if isinstance(scope, dict) else {"type": "default"}
    return json.dumps(scope, sort_keys=True), str(language_code or "")


def _number(params: JSONDict, name: str, default: float) -> float:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad_request(f"invalid {name} specified")
    return value


def _as_chat_id(value: Any) -> int | str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value)
    try:
        return int(text)
    except ValueError:
        return text


_Handler = Callable[[ApiCall], Awaitable[Any]]


class FakeBotApi:
    """The fake server. Use `async with FakeBotApi() as server:` or the `fake_bot_api` fixture."""

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        bot_username: str = "remindbot_test_bot",
        bot_first_name: str = "RemindBot",
        token: str | None = None,
        require_known_chats: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_retry_delay: float = 0.05,
        webhook_timeout: float = 5.0,
    ) -> None:
        if not is_loopback_host(host):
            raise ValueError(f"the fake Bot API listens on loopback only, not {host!r}")
        self.clock = clock
        self.wall_clock = wall_clock
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        # If set, other well-formed tokens get 401 Unauthorized, as a revoked token does.
        self.expected_token = token
        # If set, sending to a chat no FakeUser has written from gives "chat not found".
        self.require_known_chats = require_known_chats
        self.webhook_retry_delay = webhook_retry_delay
        self.webhook_timeout = webhook_timeout
        # Telegram may end a long poll before its timeout; tests of a real process set this
        # so that stopping it does not wait for the rest of a 10-second poll.
        self.max_long_poll: float | None = None
        self.host = host
        self.port = port

        self.calls: list[ApiCall] = []
        self.tokens: list[str] = []  # every token seen, in order of first use
        self._last_token: str | None = None
        self.updates: list[FakeUpdate] = []
        self.presses: list[CallbackPress] = []
        self.users: dict[int, FakeUser] = {}
        self.injections: list[Injection] = []
        self.rate_limit = RateLimit()
        self.webhook: Webhook | None = None
        self.commands: dict[tuple[str, str], list[JSONDict]] = {}
        # ("description" or "short_description", language code or "") -> text.
        self.descriptions: dict[tuple[str, str], str] = {}
        # Exceptions the fake itself raised while answering; the fixture fails the test on them.
        self.internal_errors: list[Exception] = []

        self._messages: dict[int, list[SentMessage]] = {}
        self._next_message_id: dict[int, int] = {}
        self._pending: list[FakeUpdate] = []
        self._allowed_updates: list[str] | None = None
        self._blocked: set[int] = set()
        self._files: dict[str, tuple[UploadedFile, str]] = {}  # file_id: upload, unique id
        self._update_ids = itertools.count(100_001)
        self._press_ids = itertools.count(9_000_001)
        self._file_ids = itertools.count(1)
        self._poll_generation = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._delivery_task: asyncio.Task[None] | None = None
        self._handlers: dict[str, tuple[str, _Handler]] = {
            name.lower(): (name, handler)
            for name, handler in {
                "getMe": self._get_me,
                "getUpdates": self._get_updates,
                "setWebhook": self._set_webhook,
                "deleteWebhook": self._delete_webhook,
                "getWebhookInfo": self._get_webhook_info,
                "sendMessage": self._send_message,
                "sendPhoto": self._send_photo,
                "sendDocument": self._send_document,
                "editMessageText": self._edit_message_text,
                "editMessageCaption": self._edit_message_caption,
                "editMessageReplyMarkup": self._edit_message_reply_markup,
                "deleteMessage": self._delete_message,
                "answerCallbackQuery": self._answer_callback_query,
                "sendChatAction": self._send_chat_action,
                "getChat": self._get_chat,
                "setMyCommands": self._set_my_commands,
                "getMyCommands": self._get_my_commands,
                "deleteMyCommands": self._delete_my_commands,
                "setMyDescription": self._set_my_description,
                "setMyShortDescription": self._set_my_short_description,
            }.items()
        }

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the fake Bot API is already running")
        self._closing.clear()
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self._session = aiohttp.ClientSession()
        self._delivery_task = asyncio.create_task(
            self._deliver_to_webhook(), name="FakeBotApi webhook delivery"
        )

    async def stop(self) -> None:
        if self._runner is None:
            return
        self._closing.set()
        self._notify()
        if self._delivery_task is not None:
            self._delivery_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._delivery_task
            self._delivery_task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """For `Bot(token, base_url=...)` / `ApplicationBuilder().base_url(...)`."""
        return f"http://{self.host}:{self.port}/bot"

    @property
    def token(self) -> str | None:
        """The token of the latest accepted request."""
        return self._last_token

    @property
    def bot_id(self) -> int:
        """The bot's user id: the number its token starts with, as with Telegram."""
        token = self.token or self.expected_token
        return int(token.split(":", 1)[0]) if token else 1

    def bot_user(self) -> JSONDict:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    # -- acting as users -------------------------------------------------------------------

    def add_user(self, user: FakeUser) -> None:
        """Make the user's private chat known without sending anything."""
        self.users[user.id] = user

    async def send_text(self, user: FakeUser, text: str) -> FakeUpdate:
        """The user writes `text` to the bot; a leading "/command" gets a bot_command entity."""
        self.add_user(user)
        message: JSONDict = {
            "message_id": self._new_message_id(user.id),
            "from": user.to_api(),
            "chat": user.private_chat(),
            "date": int(self.wall_clock()),
            "text": text,
        }
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            length = len(command.encode("utf-16-le")) // 2  # Telegram counts UTF-16 units
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return self.send_update({"message": message})

    async def press_button(
        self,
        user: FakeUser,
        message: SentMessage,
        callback_data: str | None = None,
        *,
        text: str | None = None,
        forge: bool = False,
    ) -> CallbackPress:
        """The user presses the button with `callback_data` (or labelled `text`) on `message`.

        Refuses buttons the message does not carry (now, after edits), messages sent to someone
        else and deleted messages, unless `forge` is set to simulate a crafted callback query.
        """
        if (callback_data is None) == (text is None):
            raise TypeError("pass exactly one of callback_data and text")
        if text is not None:
            callback_data = message.button(text).callback_data
            if callback_data is None:
                raise LookupError(f"button {text!r} carries no callback_data")
        assert callback_data is not None
        if not forge:
            if message.chat_id != user.id:
                raise LookupError(
                    f"message {message.message_id} was sent to chat {message.chat_id}, "
                    f"not to user {user.id}"
                )
            if message.deleted:
                raise LookupError(f"message {message.message_id} was deleted")
            if callback_data not in message.callback_data:
                raise LookupError(
                    f"message {message.message_id} has no button with callback_data "
                    f"{callback_data!r}; it has {message.callback_data} (forge=True to send it "
                    "anyway)"
                )
        self.add_user(user)
        press_id = str(next(self._press_ids))
        query: JSONDict = {
            "id": press_id,
            "from": user.to_api(),
            "message": message.to_api(),
            "chat_instance": f"-{message.chat_id}",
            "data": callback_data,
        }
        update = self.send_update({"callback_query": query})
        press = CallbackPress(press_id, user, message, callback_data, forge, update)
        self.presses.append(press)
        return press

    async def block_bot(self, user: FakeUser) -> FakeUpdate:
        """The user blocks the bot: a my_chat_member update, then 403 on every send to them."""
        self._blocked.add(user.id)
        return self._chat_member_update(user, old="member", new="kicked")

    async def unblock_bot(self, user: FakeUser) -> FakeUpdate:
        self._blocked.discard(user.id)
        return self._chat_member_update(user, old="kicked", new="member")

    def _chat_member_update(self, user: FakeUser, *, old: str, new: str) -> FakeUpdate:
        def member(status: str) -> JSONDict:
            data: JSONDict = {"user": self.bot_user(), "status": status}
            if status == "kicked":
                data["until_date"] = 0
            return data

        return self.send_update(
            {
                "my_chat_member": {
                    "chat": user.private_chat(),
                    "from": user.to_api(),
                    "date": int(self.wall_clock()),
                    "old_chat_member": member(old),
                    "new_chat_member": member(new),
                }
            }
        )

    def send_update(self, content: Mapping[str, Any], *, unsolicited: bool = False) -> FakeUpdate:
        """Queue an update with any content, e.g. {"message": {...}}; its update_id is added.

        An `unsolicited` update reaches the bot even if its allowed_updates leave its type out,
        as Telegram warns may happen for updates queued before allowed_updates changed.
        """
        (kind,) = (name for name in content if name != "update_id")
        update_id = next(self._update_ids)
        update = FakeUpdate(
            update_id,
            kind,
            {"update_id": update_id, **content},
            self.clock(),
            unsolicited=unsolicited,
        )
        self.updates.append(update)
        self._pending.append(update)
        self._notify()
        return update

    # -- inspecting ------------------------------------------------------------------------

    def messages(self, chat_id: int) -> list[SentMessage]:
        """Every message the bot sent to the chat, oldest first, in its current state."""
        return list(self._messages.get(chat_id, []))

    def all_messages(self) -> list[SentMessage]:
        every = [message for chat in self._messages.values() for message in chat]
        return sorted(every, key=lambda message: message.time)

    def calls_to(self, method: str, *, chat_id: int | str | None = None) -> list[ApiCall]:
        return [
            call
            for call in self.calls
            if call.method.lower() == method.lower()
            and (chat_id is None or call.chat_id == chat_id)
        ]

    def mark(self) -> int:
        """A position in `calls`; pass it as `after=` to wait only for later calls."""
        return len(self.calls)

    @property
    def pending_updates(self) -> list[FakeUpdate]:
        return list(self._pending)

    def commands_for(
        self, scope: Mapping[str, Any] | None = None, language_code: str = ""
    ) -> list[JSONDict]:
        """The commands set for a scope (default scope if None) and language."""
        return self.commands.get(_scope_key(dict(scope) if scope else None, language_code), [])

    # -- waiting ---------------------------------------------------------------------------

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        *,
        # A default deadline, so that a test waiting for something that never comes fails.
        timeout: float = 5.0,  # noqa: ASYNC109
        what: str = "condition",
    ) -> None:
        """Return once `predicate()` holds, re-checking whenever the server's state changes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = ", ".join(f"{c.method}:{c.outcome}" for c in self.calls[-15:])
                raise WaitTimeout(f"{what} did not happen within {timeout}s; calls: [{recent}]")
            await self._wait_for_change(remaining)

    async def wait_for(
        self,
        what: str | Callable[[ApiCall], bool],
        *,
        chat_id: int | str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
        after: int = 0,
        done: bool = True,
    ) -> ApiCall:
        """The first call from index `after` on to a method (or matching a predicate).

        Only answered calls count unless `done=False`.
        """

        def matches(call: ApiCall) -> bool:
            if done and not call.done:
                return False
            if chat_id is not None and call.chat_id != chat_id:
                return False
            if isinstance(what, str):
                return call.method.lower() == what.lower()
            return what(call)

        found: list[ApiCall] = []

        def seen() -> bool:
            found.extend(call for call in self.calls[after:] if matches(call))
            return bool(found)

        description = what if isinstance(what, str) else getattr(what, "__name__", "a call")
        await self.wait_until(seen, timeout=timeout, what=f"a call to {description}")
        return found[0]

    async def wait_for_message(
        self,
        chat_id: int,
        *,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> SentMessage:
        """The `count`-th message the bot sent to the chat (waiting for it if need be)."""
        await self.wait_until(
            lambda: len(self._messages.get(chat_id, [])) >= count,
            timeout=timeout,
            what=f"message #{count} to chat {chat_id}",
        )
        return self._messages[chat_id][count - 1]

    async def wait_for_answer(
        self,
        press: CallbackPress,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> JSONDict:
        """The answerCallbackQuery parameters for the press."""
        await self.wait_until(
            lambda: press.answer is not None,
            timeout=timeout,
            what=f"an answer to callback query {press.id}",
        )
        assert press.answer is not None
        return press.answer

    async def wait_delivered(
        self,
        update: FakeUpdate,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> Delivery:
        """The first successful hand-over of the update to the bot."""

        def delivered() -> bool:
            return any(d.error is None and d.status in (None, 200) for d in update.deliveries)

        await self.wait_until(delivered, timeout=timeout, what=f"update {update.update_id}")
        return next(d for d in update.deliveries if d.error is None and d.status in (None, 200))

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_for_change(self, seconds: float | None) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                await waiter
        except TimeoutError:
            pass
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up when the server stops."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closing.wait()

    # -- faults and limits -----------------------------------------------------------------

    def inject(
        self,
        method: str,
        fault: Fault,
        *,
        chat_id: int | str | None = None,
        times: int | None = None,
    ) -> Injection:
        """Answer calls to `method` ("*" for any) with `fault`, `times` times or until cleared."""
        injection = Injection(method, fault, chat_id, times)
        self.injections.append(injection)
        return injection

    def clear_faults(self, method: str | None = None, *, chat_id: int | str | None = None) -> None:
        """Disarm faults, all of them or those for a method and/or chat."""
        self.injections = [
            injection
            for injection in self.injections
            if not (
                (method is None or injection.method.lower() == method.lower())
                and (chat_id is None or injection.chat_id == chat_id)
            )
        ]

    def enable_rate_limit(
        self,
        *,
        global_per_second: int = DEFAULT_GLOBAL_PER_SECOND,
        per_chat_per_second: int = DEFAULT_PER_CHAT_PER_SECOND,
    ) -> RateLimit:
        """Answer sends beyond these rates (over the last second of `clock`) with 429."""
        self.rate_limit.enabled = True
        self.rate_limit.global_per_second = global_per_second
        self.rate_limit.per_chat_per_second = per_chat_per_second
        return self.rate_limit

    def disable_rate_limit(self) -> None:
        self.rate_limit.enabled = False

    def _take_fault(self, call: ApiCall) -> Fault | None:
        for injection in self.injections:
            if injection.matches(call.method, call.chat_id) and not injection.exhausted:
                injection.hits += 1
                if injection.exhausted:
                    self.injections.remove(injection)
                return injection.fault
        return None

    # -- HTTP ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        method = request.match_info["method"]
        if (entry := self._handlers.get(method.lower())) is not None:
            method = entry[0]  # Telegram's method names are case-insensitive
        try:
            params, files = await _read_parameters(request)
            parse_error = None
        except _ApiError as error:
            params, files, parse_error = {}, {}, error
        call = ApiCall(
            seq=len(self.calls),
            method=method,
            params=params,
            files=files,
            token=token,
            chat_id=_as_chat_id(params.get("chat_id")),
            time=self.clock(),
        )
        if call.chat_id is None and method == "answerCallbackQuery":
            press = self._press(params.get("callback_query_id"))
            call.chat_id = press.message.chat_id if press else None
        self.calls.append(call)
        self._notify()
        try:
            if parse_error is not None:
                raise parse_error
            body = await self._answer(call)
        except _ApiError as error:
            body = {"ok": False, "error_code": error.error_code, "description": error.description}
            if error.retry_after is not None:
                body["parameters"] = {"retry_after": error.retry_after}
            call.retry_after = error.retry_after
            self._finish(call, error.error_code, error.outcome, error.description)
        except asyncio.CancelledError:
            call.disconnected = True
            if not call.done:
                self._finish(call, None, "cancelled", "the client closed the connection")
            raise
        except Exception as error:  # a bug in the fake: answer, and let the fixture fail
            self.internal_errors.append(error)
            description = f"Internal Server Error: fake Bot API failed: {error!r}"
            body = {"ok": False, "error_code": 500, "description": description}
            self._finish(call, 500, "server_error", description)
        return web.json_response(body, status=call.status or 200)

    def _finish(
        self, call: ApiCall, status: int | None, outcome: str, description: str | None
    ) -> None:
        call.status = status
        call.outcome = outcome
        call.description = description
        call.finished = self.clock()
        self._notify()

    async def _answer(self, call: ApiCall) -> JSONDict:
        if not TOKEN_PATTERN.fullmatch(call.token):
            raise _ApiError(404, "Not Found")
        if call.token not in self.tokens:
            self.tokens.append(call.token)
        if self.expected_token is not None and call.token != self.expected_token:
            raise _ApiError(401, "Unauthorized")
        self._last_token = call.token
        entry = self._handlers.get(call.method.lower())
        if entry is None:
            raise _ApiError(404, "Not Found")
        handler = entry[1]
        fault = self._take_fault(call)
        call.fault = fault
        if fault is not None and fault.delay:
            if fault.error_code is None and fault.applied_first:
                body = await self._run(handler, call)
                await self._sleep(fault.delay)
                return body
            await self._sleep(fault.delay)
        if fault is not None and fault.error_code is not None:
            raise _ApiError(
                fault.error_code, fault.description, retry_after=fault.retry_after_seconds
            )
        return await self._run(handler, call)

    async def _run(self, handler: _Handler, call: ApiCall) -> JSONDict:
        limited = call.method in RATE_LIMITED_METHODS
        if limited:
            self._check_chat(call.chat_id)
            retry_after = self.rate_limit.retry_after(call.chat_id, self.clock())
            if retry_after is not None:
                raise _ApiError(
                    429,
                    f"Too Many Requests: retry after {retry_after}",
                    retry_after=retry_after,
                    outcome="rate_limited",
                )
        result = await handler(call)
        if limited:
            self.rate_limit.record(call.chat_id, self.clock())
        call.result = result
        body: JSONDict = {"ok": True, "result": result}
        if call.description is not None:
            body["description"] = call.description
        self._finish(call, 200, "ok", call.description)
        return body

    # -- chats and messages ----------------------------------------------------------------

    def _new_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _check_chat(self, chat_id: int | str | None) -> int:
        if chat_id is None or chat_id == "":
            raise _bad_request("chat_id is empty")
        if isinstance(chat_id, str):
            raise _bad_request("chat not found")  # no channels or public groups here
        if self.require_known_chats and chat_id not in self.users:
            raise _bad_request("chat not found")
        if chat_id in self._blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _chat(self, chat_id: int) -> JSONDict:
        if (user := self.users.get(chat_id)) is not None:
            return user.private_chat()
        if chat_id < 0:
            kind = "supergroup" if str(chat_id).startswith("-100") else "group"
            return {"id": chat_id, "type": kind, "title": f"Group {chat_id}"}
        return {"id": chat_id, "type": "private", "first_name": f"User {chat_id}"}

    def _find_message(self, call: ApiCall, *, missing: str) -> SentMessage:
        if call.params.get("inline_message_id") is not None:
            raise _bad_request("inline messages are not supported by the fake Bot API")
        chat_id = self._check_chat(call.chat_id)
        message_id = call.params.get("message_id")
        for message in self._messages.get(chat_id, []):
            if message.message_id == message_id and not message.deleted:
                return message
        raise _bad_request(missing)

    def _store(self, call: ApiCall, **content: Any) -> SentMessage:
        chat_id = self._check_chat(call.chat_id)
        reply_markup = _check_reply_markup(call.params.get("reply_markup"))
        message = SentMessage(
            chat_id=chat_id,
            message_id=self._new_message_id(chat_id),
            date=int(self.wall_clock()),
            method=call.method,
            time=call.time,
            chat=self._chat(chat_id),
            sender=self.bot_user(),
            params=call.params,
            parse_mode=call.params.get("parse_mode"),
            reply_markup=reply_markup,
            **content,
        )
        self._messages.setdefault(chat_id, []).append(message)
        self._notify()
        return message

    def _caption(self, call: ApiCall) -> tuple[str | None, str | None]:
        raw = call.params.get("caption")
        if raw is None:
            return None, None
        caption = _render(str(raw), call.params.get("parse_mode"))
        if len(caption) > MAX_CAPTION_LENGTH:
            raise _bad_request("message caption is too long")
        return caption, str(raw)

    def _text(self, call: ApiCall) -> tuple[str, str]:
        raw = call.params.get("text")
        if raw is None or str(raw).strip() == "":
            raise _bad_request("message text is empty")
        text = _render(str(raw), call.params.get("parse_mode"))
        if not text.strip():
            raise _bad_request("message text is empty")
        if len(text) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        return text, str(raw)

    def _file(self, call: ApiCall, name: str) -> tuple[UploadedFile | None, str, str]:
        """The file (None for a URL, which is not fetched), its file_id and file_unique_id."""
        upload = call.files.get(name)
        if upload is None:
            reference = str(call.params.get(name) or "")
            if reference in self._files:
                known, unique_id = self._files[reference]
                return known, reference, unique_id
            if urlsplit(reference).scheme in ("http", "https"):
                return None, f"url-{next(self._file_ids)}", f"url-unique-{next(self._file_ids)}"
            if not reference:
                raise _bad_request(f"there is no {name} in the request")
            raise _bad_request("wrong file identifier/HTTP URL specified")
        number = next(self._file_ids)
        file_id, unique_id = f"file-{number}", f"unique-{number}"
        self._files[file_id] = (upload, unique_id)
        return upload, file_id, unique_id

    # -- Bot API methods -------------------------------------------------------------------

    async def _get_me(self, call: ApiCall) -> JSONDict:
        return self.bot_user()

    async def _get_updates(self, call: ApiCall) -> list[JSONDict]:
        if self.webhook is not None:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        params = call.params
        offset = int(_number(params, "offset", 0))
        limit = min(max(int(_number(params, "limit", 100)), 1), 100)
        timeout = max(_number(params, "timeout", 0), 0.0)
        if self.max_long_poll is not None:
            timeout = min(timeout, self.max_long_poll)
        if "allowed_updates" in params:
            self._allowed_updates = list(params["allowed_updates"]) or None
        self._confirm(offset)
        # Telegram allows one long poll at a time and ends the older one with 409.
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if generation != self._poll_generation:
                raise _ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one "
                    "bot instance is running",
                )
            batch = self._deliverable(self._allowed_updates)[:limit]
            remaining = deadline - loop.time()
            if batch or remaining <= 0 or self._closing.is_set():
                break
            await self._wait_for_change(remaining)
        now = self.clock()
        for update in batch:
            update.deliveries.append(Delivery("getUpdates", now))
        return [update.payload for update in batch]

    def _confirm(self, offset: int) -> None:
        if offset > 0:
            confirmed = [u for u in self._pending if u.update_id < offset]
        elif offset < 0:
            confirmed = self._pending[:offset]
        else:
            return
        for update in confirmed:
            update.confirmed = True
            self._pending.remove(update)

    def _deliverable(self, allowed: list[str] | None) -> list[FakeUpdate]:
        return [u for u in self._pending if allowed is None or u.kind in allowed or u.unsolicited]

    async def _set_webhook(self, call: ApiCall) -> bool:
        params = call.params
        url = str(params.get("url") or "")
        if not url:
            return await self._delete_webhook(call)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not SECRET_TOKEN_PATTERN.fullmatch(str(secret)):
            raise _bad_request("secret token contains unallowed characters")
        if params.get("drop_pending_updates"):
            self._drop_pending()
        allowed = params.get("allowed_updates")
        self.webhook = Webhook(
            url=url,
            secret_token=None if secret is None else str(secret),
            max_connections=int(_number(params, "max_connections", 40)),
            allowed_updates=list(allowed) if allowed else None,
            set_at=self.clock(),
        )
        self._poll_generation += 1  # a pending long poll ends with 409
        self._notify()
        call.description = "Webhook was set"
        return True

    async def _delete_webhook(self, call: ApiCall) -> bool:
        if call.params.get("drop_pending_updates"):
            self._drop_pending()
        call.description = "Webhook was deleted" if self.webhook else "Webhook is already deleted"
        self.webhook = None
        self._notify()
        return True

    def _drop_pending(self) -> None:
        for update in self._pending:
            update.confirmed = True
        self._pending.clear()

    async def _get_webhook_info(self, call: ApiCall) -> JSONDict:
        hook = self.webhook
        info: JSONDict = {
            "url": hook.url if hook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if hook is not None:
            info["max_connections"] = hook.max_connections
            if hook.allowed_updates:
                info["allowed_updates"] = hook.allowed_updates
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
        return info

    async def _send_message(self, call: ApiCall) -> JSONDict:
        text, raw = self._text(call)
        return self._store(call, text=text, raw_text=raw).to_api()

    async def _send_photo(self, call: ApiCall) -> JSONDict:
        self._check_chat(call.chat_id)
        caption, raw = self._caption(call)
        upload, file_id, unique_id = self._file(call, "photo")
        width, height = _image_size(upload.data) if upload else (1, 1)
        size: JSONDict = {
            "file_id": file_id,
            "file_unique_id": unique_id,
            "width": width,
            "height": height,
        }
        if upload is not None:
            size["file_size"] = len(upload.data)
        message = self._store(
            call, caption=caption, raw_text=raw, file=upload, media={"photo": [size]}
        )
        return message.to_api()

    async def _send_document(self, call: ApiCall) -> JSONDict:
        self._check_chat(call.chat_id)
        caption, raw = self._caption(call)
        upload, file_id, unique_id = self._file(call, "document")
        document: JSONDict = {"file_id": file_id, "file_unique_id": unique_id}
        if upload is not None:
            if upload.filename:
                document["file_name"] = upload.filename
            if upload.content_type:
                document["mime_type"] = upload.content_type
            document["file_size"] = len(upload.data)
        message = self._store(
            call, caption=caption, raw_text=raw, file=upload, media={"document": document}
        )
        return message.to_api()

    def _apply_edit(
        self,
        message: SentMessage,
        call: ApiCall,
        *,
        text: str | None,
        caption: str | None,
        raw: str | None,
    ) -> JSONDict:
        markup = _check_reply_markup(call.params.get("reply_markup"))
        if text == message.text and caption == message.caption and markup == message.reply_markup:
            raise _bad_request(_NOT_MODIFIED.removeprefix("Bad Request: "))
        message.text, message.caption, message.reply_markup = text, caption, markup
        if raw is not None:
            message.raw_text = raw
        message.edit_date = int(self.wall_clock())
        message.edits.append(Edit(call.method, call.time, text, caption, markup, call.params))
        self._notify()
        return message.to_api()

    async def _edit_message_text(self, call: ApiCall) -> JSONDict:
        message = self._find_message(call, missing="message to edit not found")
        if message.text is None:
            raise _bad_request("there is no text in the message to edit")
        text, raw = self._text(call)
        # Leaving out reply_markup removes the keyboard, as with Telegram.
        return self._apply_edit(message, call, text=text, caption=None, raw=raw)

    async def _edit_message_caption(self, call: ApiCall) -> JSONDict:
        message = self._find_message(call, missing="message to edit not found")
        if message.text is not None:
            raise _bad_request("there is no caption in the message to edit")
        caption, raw = self._caption(call)
        return self._apply_edit(message, call, text=None, caption=caption, raw=raw)

    async def _edit_message_reply_markup(self, call: ApiCall) -> JSONDict:
        message = self._find_message(call, missing="message to edit not found")
        return self._apply_edit(message, call, text=message.text, caption=message.caption, raw=None)

    async def _delete_message(self, call: ApiCall) -> bool:
        message = self._find_message(call, missing="message to delete not found")
        message.deleted = True
        self._notify()
        return True

    def _press(self, query_id: Any) -> CallbackPress | None:
        return next((p for p in self.presses if p.id == str(query_id)), None)

    async def _answer_callback_query(self, call: ApiCall) -> bool:
        press = self._press(call.params.get("callback_query_id"))
        if press is None or press.answer is not None:
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        press.answer = dict(call.params)
        press.answered_at = call.time
        self._notify()
        return True

    async def _send_chat_action(self, call: ApiCall) -> bool:
        self._check_chat(call.chat_id)
        return True

    async def _get_chat(self, call: ApiCall) -> JSONDict:
        chat_id = self._check_chat(call.chat_id)
        return {**self._chat(chat_id), "accent_color_id": 0, "max_reaction_count": 11}

    async def _set_my_commands(self, call: ApiCall) -> bool:
        commands = call.params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad_request("commands must be a list of at most 100 BotCommands")
        for command in commands:
            if not isinstance(command, dict) or not COMMAND_PATTERN.fullmatch(
                str(command.get("command", ""))
            ):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad_request("command description is empty or too long")
        key = _scope_key(call.params.get("scope"), call.params.get("language_code"))
        self.commands[key] = [dict(command) for command in commands]
        return True

    async def _get_my_commands(self, call: ApiCall) -> list[JSONDict]:
        key = _scope_key(call.params.get("scope"), call.params.get("language_code"))
        return self.commands.get(key, [])

    def _describe(self, call: ApiCall, kind: str, limit: int) -> bool:
        text = call.params.get(kind)
        if text is not None and (not isinstance(text, str) or len(text) > limit):
            raise _bad_request(f"{kind} must be text of at most {limit} characters")
        key = (kind, str(call.params.get("language_code") or ""))
        if text:
            self.descriptions[key] = text
        else:
            self.descriptions.pop(key, None)
        return True

    async def _set_my_description(self, call: ApiCall) -> bool:
        return self._describe(call, "description", 512)

    async def _set_my_short_description(self, call: ApiCall) -> bool:
        return self._describe(call, "short_description", 120)

    async def _delete_my_commands(self, call: ApiCall) -> bool:
        key = _scope_key(call.params.get("scope"), call.params.get("language_code"))
        self.commands.pop(key, None)
        return True

    # -- webhook delivery ------------------------------------------------------------------

    async def _deliver_to_webhook(self) -> None:
        failures = 0
        while not self._closing.is_set():
            hook = self.webhook
            batch = self._deliverable(hook.allowed_updates) if hook else []
            if hook is None or not batch:
                failures = 0
                await self._wait_for_change(None)
                continue
            update = batch[0]
            if await self._post_update(hook, update):
                failures = 0
                update.confirmed = True
                self._pending.remove(update)
                self._notify()
            else:
                # Telegram retries too, backing off; here within a second at most.
                await self._sleep(min(self.webhook_retry_delay * 2**failures, 1.0))
                failures += 1

    async def _post_update(self, hook: Webhook, update: FakeUpdate) -> bool:
        assert self._session is not None
        headers = {"Content-Type": "application/json"}
        if hook.secret_token is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook.secret_token
        host = urlsplit(hook.url).hostname or ""
        status: int | None = None
        error: str | None = None
        if not is_loopback_host(host):
            error = f"the fake Bot API delivers to loopback only, not to {host!r}"
        else:
            try:
                async with self._session.post(
                    hook.url,
                    data=json.dumps(update.payload),
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.webhook_timeout),
                ) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as failure:
                error = f"Connection failed: {failure!r}"
        update.deliveries.append(Delivery("webhook", self.clock(), status, error))
        if error is None and status is not None and 200 <= status < 300:
            self._notify()
            return True
        hook.last_error_date = int(self.wall_clock())
        hook.last_error_message = error or f"Wrong response from the webhook: {status}"
        self._notify()
        return False


@pytest.fixture
async def fake_bot_api() -> AsyncIterator[FakeBotApi]:
    """A started fake Bot API server, stopped after the test."""
    async with FakeBotApi() as server:
        yield server
    if server.internal_errors:
        pytest.fail(f"the fake Bot API failed while answering: {server.internal_errors!r}")


__all__ = [
    "ApiCall",
    "Button",
    "CallbackPress",
    "Delivery",
    "Edit",
    "FakeBotApi",
    "FakeUpdate",
    "FakeUser",
    "Fault",
    "Injection",
    "ManualClock",
    "RateLimit",
    "SentMessage",
    "UploadedFile",
    "WaitTimeout",
    "Webhook",
    "fake_bot_api",
]
