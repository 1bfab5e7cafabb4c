"""Make any attempt to reach a host other than this machine fail loudly, before DNS or a packet.

Loopback (127.0.0.0/8, ::1, "localhost"), Unix sockets and binding a listening socket stay
allowed, so tests can talk to the fake Bot API server and to their own webhook receivers.
Everything else raises `NetworkAccessBlocked` naming the host, and is also recorded so that the
`network_guard` fixture fails the test even when the code under test swallowed the error (PTB,
for one, wraps every exception of its HTTP stack in `NetworkError` and its updater retries).

Not covered: C extensions that open their own sockets (for example c-ares behind aiodns).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

# A PostgreSQL the tests may be pointed at, perhaps on another host (a CI service container).
_ALLOWED_URL_VARIABLES = ("REMINDBOT_TEST_POSTGRES_URL",)
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
# Addresses a server binds to; resolving them sends nothing.
_UNSPECIFIED = frozenset({"", "0.0.0.0", "::"})
_NUMERIC_NAMEINFO = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV


class NetworkAccessBlocked(RuntimeError):
    """A test tried to reach a host that is not this machine.

    A RuntimeError, not an OSError, so that retry loops written for network failures do not
    quietly absorb it.
    """

    def __init__(self, what: str, host: object) -> None:
        self.host = host
        super().__init__(
            f"network access blocked in tests: {what} to {host!r} "
            "(only loopback and Unix sockets are allowed)"
        )


def _host_text(host: object) -> str:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    return str(host).strip().lower().rstrip(".")


def is_loopback_host(host: object) -> bool:
    """Whether `host` is a name or address of this machine's loopback interface."""
    text = _host_text(host)
    if text in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class NetworkGuard:
    """The patches on `socket`; one instance per `install()`, nestable."""

    def __init__(self, allow_hosts: Iterable[str] = ()) -> None:
        self.allowed_hosts = {_host_text(host) for host in allow_hosts}
        self.allowed_addresses: set[str] = set()
        # Refused attempts, in order: "getaddrinfo 'api.telegram.org'" and the like.
        self.refusals: list[str] = []
        self._lock = threading.Lock()
        self._installed = False

    def allows(self, host: object) -> bool:
        text = _host_text(host)
        return (
            is_loopback_host(text)
            or text in self.allowed_hosts
            or text.split("%", 1)[0] in self.allowed_addresses
        )

    def take_refusals(self) -> list[str]:
        """Return and forget the refusals so far (for tests that provoke one on purpose)."""
        with self._lock:
            taken, self.refusals = self.refusals, []
        return taken

    def _refuse(self, what: str, host: object) -> NetworkAccessBlocked:
        shown = _host_text(host)
        with self._lock:
            self.refusals.append(f"{what} {shown!r}")
        return NetworkAccessBlocked(what, shown)

    def check_lookup(self, what: str, host: object) -> None:
        if host is None or _host_text(host) in _UNSPECIFIED or self.allows(host):
            return
        raise self._refuse(what, host)

    def check_address(self, what: str, family: int, address: Any) -> None:
        if family not in (socket.AF_INET, socket.AF_INET6):
            return  # Unix, netlink and friends never leave the machine
        host = address[0] if isinstance(address, tuple) and address else address
        if not self.allows(host):
            raise self._refuse(what, host)

    def remember_addresses(self, host: object, infos: list[Any]) -> None:
        """An explicitly allowed name may be dialled at the addresses it resolved to."""
        if _host_text(host) in self.allowed_hosts:
            for *_, sockaddr in infos:
                self.allowed_addresses.add(str(sockaddr[0]).split("%", 1)[0])

    def uninstall(self) -> None:
        if self._installed:
            _ACTIVE.remove(self)
            self._installed = False
            if not _ACTIVE:
                _restore()


_ACTIVE: list[NetworkGuard] = []
_ORIGINALS: dict[str, Any] = {}


def _innermost() -> NetworkGuard | None:
    return _ACTIVE[-1] if _ACTIVE else None


def _guarded_getaddrinfo(
    host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
) -> Any:
    guard = _innermost()
    if guard is not None:
        guard.check_lookup("getaddrinfo", host)
    infos = _ORIGINALS["getaddrinfo"](host, port, family, type, proto, flags)
    if guard is not None:
        guard.remember_addresses(host, infos)
    return infos


def _guarded_gethostbyname(host: Any) -> Any:
    guard = _innermost()
    if guard is not None:
        guard.check_lookup("gethostbyname", host)
    return _ORIGINALS["gethostbyname"](host)


def _guarded_gethostbyname_ex(host: Any) -> Any:
    guard = _innermost()
    if guard is not None:
        guard.check_lookup("gethostbyname_ex", host)
    return _ORIGINALS["gethostbyname_ex"](host)


def _guarded_gethostbyaddr(host: Any) -> Any:
    guard = _innermost()
    if guard is not None:
        guard.check_lookup("gethostbyaddr", host)
    return _ORIGINALS["gethostbyaddr"](host)


def _guarded_getnameinfo(sockaddr: Any, flags: int) -> Any:
    guard = _innermost()
    if guard is not None and flags & _NUMERIC_NAMEINFO != _NUMERIC_NAMEINFO:
        guard.check_lookup("getnameinfo", sockaddr[0])
    return _ORIGINALS["getnameinfo"](sockaddr, flags)


def _guarded_connect(self: socket.socket, address: Any) -> None:
    guard = _innermost()
    if guard is not None:
        guard.check_address("connect", self.family, address)
    _ORIGINALS["connect"](self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    guard = _innermost()
    if guard is not None:
        guard.check_address("connect_ex", self.family, address)
    result: int = _ORIGINALS["connect_ex"](self, address)
    return result


def _guarded_sendto(self: socket.socket, data: Any, *args: Any) -> int:
    guard = _innermost()
    if guard is not None and args:
        guard.check_address("sendto", self.family, args[-1])
    result: int = _ORIGINALS["sendto"](self, data, *args)
    return result


_MODULE_PATCHES = {
    "getaddrinfo": _guarded_getaddrinfo,
    "gethostbyname": _guarded_gethostbyname,
    "gethostbyname_ex": _guarded_gethostbyname_ex,
    "gethostbyaddr": _guarded_gethostbyaddr,
    "getnameinfo": _guarded_getnameinfo,
}
_SOCKET_PATCHES = {
    "connect": _guarded_connect,
    "connect_ex": _guarded_connect_ex,
    "sendto": _guarded_sendto,
}


def _patch() -> None:
    # asyncio's loop.getaddrinfo looks up socket.getaddrinfo at call time and its
    # sock_connect calls socket.connect, so these patches cover asyncio, anyio and httpx too.
    for name, replacement in _MODULE_PATCHES.items():
        _ORIGINALS[name] = getattr(socket, name)
        setattr(socket, name, replacement)
    for name, replacement in _SOCKET_PATCHES.items():
        _ORIGINALS[name] = getattr(socket.socket, name)
        setattr(socket.socket, name, replacement)


def _restore() -> None:
    for name in _MODULE_PATCHES:
        setattr(socket, name, _ORIGINALS.pop(name))
    for name in _SOCKET_PATCHES:
        setattr(socket.socket, name, _ORIGINALS.pop(name))


def install(allow_hosts: Iterable[str] = ()) -> NetworkGuard:
    """Start refusing non-loopback hosts; `allow_hosts` names extra hosts that may be reached."""
    if not _ACTIVE:
        _patch()
    guard = NetworkGuard(allow_hosts)
    guard._installed = True
    _ACTIVE.append(guard)
    return guard


@contextlib.contextmanager
def blocked_network(allow_hosts: Iterable[str] = ()) -> Iterator[NetworkGuard]:
    """`install()` for the duration of a `with` block."""
    guard = install(allow_hosts)
    try:
        yield guard
    finally:
        guard.uninstall()


def hosts_allowed_by_environment() -> list[str]:
    """Hosts of the external services the test run is configured to use."""
    hosts = []
    for variable in _ALLOWED_URL_VARIABLES:
        url = os.environ.get(variable)
        if url and (host := urlsplit(url).hostname):
            hosts.append(host)
    return hosts


@pytest.fixture
def network_guard() -> Iterator[NetworkGuard]:
    """Refuse non-loopback connections during the test; fail it if any was attempted."""
    with blocked_network(hosts_allowed_by_environment()) as guard:
        yield guard
    if refusals := guard.take_refusals():
        pytest.fail("the test tried to reach the network: " + "; ".join(refusals))
