"""python-telegram-bot's HTTP layer on aiohttp.

PTB's default (``HTTPXRequest``) spends most of the bot's CPU per message in httpx and
httpcore; sending reminders is nearly all HTTP, so the bot uses this lighter client for every
Bot API call instead. It keeps PTB's contract: ``do_request`` returns the status and the raw
body and PTB turns them into results and ``telegram.error`` exceptions; a timeout becomes
``TimedOut`` and any other connection problem ``NetworkError``.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

JSON: Final = "application/json"
_TOKEN_IN_URL: Final = re.compile(r"/bot[^/\s]+/")


class AiohttpRequest(BaseRequest):
    """One aiohttp session with a pool of up to ``connection_pool_size`` keep-alive
    connections. Timeouts are in seconds, as in ``HTTPXRequest``; ``None`` means no limit.

    aiohttp has no write timeout of its own, so each request is also bounded as a whole by
    the sum of its connect, pool, write and read timeouts (when all are set).

    ``observe``, when set, is told each request's Bot API method and duration in seconds,
    answered or not (the web server's histogram of Telegram request durations).
    """

    __slots__ = (
        "_connect_timeout",
        "_media_write_timeout",
        "_pool_size",
        "_pool_timeout",
        "_proxies",
        "_read_timeout",
        "_session",
        "_write_timeout",
        "observe",
    )

    def __init__(
        self,
        *,
        connection_pool_size: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
    ) -> None:
        if connection_pool_size < 1:
            raise ValueError("connection_pool_size must be at least 1")
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}
        self.observe: Callable[[str, float], None] | None = None

    def _proxy(self, url: str) -> str | None:
        """HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as PTB's default client applies them: looked
        up once per host (aiohttp's own ``trust_env`` reads the environment on every request,
        which doubled the CPU per message)."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname or "")
        if key not in self._proxies:
            bypass = urllib.request.proxy_bypass(key[1])
            self._proxies[key] = None if bypass else urllib.request.getproxies().get(key[0])
        return self._proxies[key]

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            # Created here, inside the event loop that will use it, as aiohttp requires.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                headers={"User-Agent": self.USER_AGENT},
                skip_auto_headers=("Accept-Encoding",),
                auto_decompress=False,
            )
            self._proxies = {}

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")

        body, headers = _encode(request_data)
        uploading = isinstance(body, aiohttp.FormData)
        read = _given(read_timeout, self._read_timeout)
        connect = _given(connect_timeout, self._connect_timeout)
        pool = _given(pool_timeout, self._pool_timeout)
        write = _given(
            write_timeout, self._media_write_timeout if uploading else self._write_timeout
        )
        parts = (connect, pool, write, read)
        timeout = aiohttp.ClientTimeout(
            total=None if None in parts else sum(p for p in parts if p is not None),
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            sock_read=read,
        )
        started = time.perf_counter()
        try:
            async with session.request(
                method,
                url,
                data=body,
                headers=headers,
                timeout=timeout,
                proxy=self._proxy(url),
                allow_redirects=False,
            ) as response:
                return response.status, await response.read()
        # Neither the message nor a chained cause may carry the URL: it holds the bot token,
        # and messages end up in logs and in the delivery log.
        except TimeoutError:  # aiohttp's timeouts are TimeoutErrors too
            raise TimedOut from None
        except aiohttp.ClientError as error:
            reason = _TOKEN_IN_URL.sub("/bot<token>/", str(error))
            raise NetworkError(f"aiohttp.{type(error).__name__}: {reason}") from None
        finally:
            if self.observe is not None:
                # The method is the URL's last segment: .../bot<token>/sendMessage.
                self.observe(url[url.rfind("/") + 1 :], time.perf_counter() - started)


def _given(value: ODVInput[float], default: float | None) -> float | None:
    """A per-call timeout, or this request object's own when the call gave none."""
    return default if isinstance(value, DefaultValue) else value


def _encode(
    request_data: RequestData | None,
) -> tuple[aiohttp.FormData | bytes | None, dict[str, str] | None]:
    """The body and its headers: multipart with files, else one JSON document, which the
    Bot API accepts for every call without files and which is several times cheaper to make
    than PTB's form encoding of the same parameters."""
    if request_data is None:
        return None, None
    files = request_data.multipart_data
    if not files:
        body = json.dumps(request_data.parameters, ensure_ascii=False).encode()
        return body, {"Content-Type": JSON}
    form = aiohttp.FormData()
    for name, value in request_data.json_parameters.items():
        form.add_field(name, value)
    for name, (filename, content, mime_type) in files.items():
        form.add_field(name, content, filename=filename, content_type=mime_type)
    return form, None
