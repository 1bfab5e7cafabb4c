"""The operator files in deploy/: Dockerfile, entrypoint, compose file, systemd unit, env example.

No Docker engine is needed: the Dockerfile and compose file are read and checked for the
flow operators rely on, the entrypoint and the healthcheck command are run for real, and the
systemd unit goes through ``systemd-analyze verify`` where that tool is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices

from bot.settings import RENAMED, RETIRED, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

# The web server's port, which the healthcheck asks (or its old name, read for one release).
HTTP_PORT = "REMINDBOT_HTTP_PORT"
OLD_HTTP_PORT = "REMINDBOT_HEALTH_PORT"
SECRETS = ("TELEGRAM_BOT_TOKEN", "REMINDBOT_WEBHOOK_SECRET", "POSTGRES_PASSWORD")
ENTRYPOINT = "/usr/local/bin/remindbot-entrypoint"
BINARY = "/opt/remindbot/venv/bin/remindbot"


def _settings_variables(*, old: bool = False) -> set[str]:
    """The environment variable of every Settings field (the name its errors use); with
    ``old``, also the renamed and retired ones, which the example no longer lists."""
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        first = choices[0] if choices else None
        assert isinstance(first, str), f"Settings.{name} has no environment variable"
        names.add(first)
    return names if old else names - set(RENAMED) - RETIRED


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No remindbot variable from the caller's environment, and no .env file to read."""
    monkeypatch.chdir(tmp_path)
    for name in _settings_variables(old=True):
        monkeypatch.delenv(name, raising=False)


# --- Dockerfile and entrypoint -------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def _dockerfile_stages() -> list[list[Instruction]]:
    """Instructions per build stage; continuation lines joined, comments dropped."""
    stages: list[list[Instruction]] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        pending = ""
        instruction = Instruction(keyword.upper(), arguments.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        elif instruction.keyword != "ARG":
            assert stages, f"{instruction.keyword} before the first FROM"
        if stages:
            stages[-1].append(instruction)
    assert not pending, "the Dockerfile ends inside a continued line"
    return stages


def _only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the stage, found {len(found)}"
    return found[0]


def _healthcheck_command(arguments: str) -> list[str]:
    options, sep, command = arguments.partition("CMD ")
    assert sep, "HEALTHCHECK without CMD"
    assert all(o.startswith("--") for o in options.split()), options
    parsed = json.loads(command)
    assert isinstance(parsed, list), "HEALTHCHECK CMD should be exec form (a JSON list)"
    return [str(part) for part in parsed]


def test_dockerfile_builds_a_wheel_in_a_builder_stage() -> None:
    builder, *_, runtime = _dockerfile_stages()
    source = builder[0].arguments
    assert re.fullmatch(r"python:\S*slim\S* AS builder", source, re.IGNORECASE), source
    assert any(
        i.keyword == "RUN" and ("pip wheel" in i.arguments or "-m build" in i.arguments)
        for i in builder
    ), "the builder stage should build the wheel (pip wheel . or python -m build)"
    assert "slim" in runtime[0].arguments.split()[0], "the runtime image should be slim"
    assert any(
        "from=builder" in i.arguments or "--from=builder" in i.arguments
        for i in runtime
        if i.keyword in {"RUN", "COPY"}
    ), "the runtime stage should install what the builder built"


def test_dockerfile_copies_files_that_exist() -> None:
    """Every COPY from the build context (compose: context ..) names a file of the repo."""
    for stage in _dockerfile_stages():
        for instruction in stage:
            if instruction.keyword != "COPY" or "--from=" in instruction.arguments:
                continue
            *sources, _destination = [
                part for part in instruction.arguments.split() if not part.startswith("--")
            ]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_dockerfile_runtime_runs_unprivileged_with_healthcheck() -> None:
    runtime = _dockerfile_stages()[-1]
    user = [i for i in runtime if i.keyword == "USER"][-1].arguments.split(":")[0]
    assert user not in {"root", "0"}, "the runtime stage should run as a non-root user"
    assert _only(runtime, "STOPSIGNAL").arguments == "SIGTERM"
    command = _healthcheck_command(_only(runtime, "HEALTHCHECK").arguments)
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2]
    assert HTTP_PORT in command[2]


def test_dockerfile_bakes_in_no_secret_and_a_sqlite_file_in_data(
    clean_environment: None,
) -> None:
    variables: dict[str, str] = {}
    for stage in _dockerfile_stages():
        for instruction in stage:
            if instruction.keyword in {"ENV", "ARG"}:
                for assignment in instruction.arguments.split():
                    name, _, value = assignment.partition("=")
                    variables[name] = value
    assert not set(variables) & set(SECRETS)
    url = variables["DATABASE_URL"]
    assert url == "sqlite+aiosqlite:////data/remindbot.db"
    assert load_settings(DATABASE_URL=url).database_url == url


def test_dockerfile_entrypoint_migrates_then_runs() -> None:
    runtime = _dockerfile_stages()[-1]
    assert json.loads(_only(runtime, "ENTRYPOINT").arguments) == [ENTRYPOINT]
    assert json.loads(_only(runtime, "CMD").arguments) == ["run"]
    copies = [i.arguments.split() for i in runtime if i.keyword == "COPY"]
    assert any(c[-2:] == ["deploy/entrypoint.sh", ENTRYPOINT] for c in copies)


@pytest.fixture
def fake_remindbot(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A `remindbot` on PATH that logs "<pid> <arguments>" and fails `migrate` on request."""
    if shutil.which("sh") is None:
        pytest.skip("no /bin/sh to run the entrypoint with")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    script = bin_dir / "remindbot"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$$ $*" >> "{log}"\n'
        'if [ "$1" = migrate ]; then exit "${FAKE_MIGRATE_EXIT:-0}"; fi\n'
    )
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return env, log


def _entrypoint(env: dict[str, str], *arguments: str) -> int:
    process = subprocess.Popen(["sh", str(DEPLOY / "entrypoint.sh"), *arguments], env=env)
    assert process.wait(timeout=30) is not None
    return process.pid


def _calls(log: Path) -> list[tuple[int, str]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [(int(pid), arguments) for pid, _, arguments in (x.partition(" ") for x in lines)]


@pytest.mark.parametrize("arguments", [(), ("run",)])
def test_entrypoint_migrates_then_execs_run(
    fake_remindbot: tuple[dict[str, str], Path], arguments: tuple[str, ...]
) -> None:
    env, log = fake_remindbot
    pid = _entrypoint(env, *arguments)
    (_, first), (run_pid, second) = _calls(log)
    assert (first, second) == ("migrate", "run")
    assert run_pid == pid, "run should replace the entrypoint (exec) to receive SIGTERM"


def test_entrypoint_passes_other_commands_without_migrating(
    fake_remindbot: tuple[dict[str, str], Path],
) -> None:
    env, log = fake_remindbot
    _entrypoint(env, "patients", "--status", "active")
    assert [arguments for _, arguments in _calls(log)] == ["patients --status active"]


def test_entrypoint_does_not_run_when_migration_fails(
    fake_remindbot: tuple[dict[str, str], Path],
) -> None:
    env, log = fake_remindbot
    process = subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh")],
        env={**env, "FAKE_MIGRATE_EXIT": "3"},
        timeout=30,
        check=False,
    )
    assert process.returncode == 3
    assert [arguments for _, arguments in _calls(log)] == ["migrate"]


# --- compose.yaml --------------------------------------------------------------------------
# PyYAML is not a dependency of the project, so the compose file is written in a small
# subset of YAML (block mappings, block sequences of scalars, JSON-style flow sequences and
# double-quoted strings, plain scalars, whole-line comments) that this reader understands and
# rejects anything else. Where PyYAML is installed, a test checks both readers agree.

_KEY = re.compile(r"(?P<key>[A-Za-z0-9_.-]+):(?:[ ](?P<value>.*))?")


def _scalar(text: str) -> Any:
    text = text.strip()
    if text.startswith(('"', "[")):
        return json.loads(text)
    if text.startswith("'"):
        assert len(text) > 1, f"unterminated string: {text}"
        assert text.endswith("'"), f"unterminated string: {text}"
        return text[1:-1].replace("''", "'")
    if " #" in text:
        text = text.partition(" #")[0].rstrip()
    if text in {"", "~", "null"}:
        return None
    if text in {"true", "false"}:
        return text == "true"
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    assert text[0] not in "{&*!|>%@`", f"YAML outside the supported subset: {text}"
    assert ": " not in text, f"nested mapping in a scalar: {text}"
    assert not text.endswith(":"), f"nested mapping in a scalar: {text}"
    return text


def _block(lines: list[tuple[int, str]], start: int, indent: int) -> tuple[Any, int]:
    """The mapping or sequence whose lines start at ``start`` with this indentation."""
    index = start
    if lines[index][1].startswith("- ") or lines[index][1] == "-":
        items: list[Any] = []
        while index < len(lines) and lines[index][0] == indent:
            content = lines[index][1]
            assert content.startswith("- "), f"expected a sequence item: {content}"
            assert not _KEY.fullmatch(content[2:]), f"mappings in sequences: {content}"
            items.append(_scalar(content[2:]))
            index += 1
        result: Any = items
    else:
        mapping: dict[str, Any] = {}
        while index < len(lines) and lines[index][0] == indent:
            match = _KEY.fullmatch(lines[index][1])
            assert match, f"expected 'key: value': {lines[index][1]}"
            key, value = match["key"], match["value"]
            assert key not in mapping, f"duplicate key {key}"
            index += 1
            if value is not None and value.strip():
                mapping[key] = _scalar(value)
            elif index < len(lines) and lines[index][0] > indent:
                mapping[key], index = _block(lines, index, lines[index][0])
            else:
                mapping[key] = None
        result = mapping
    if index < len(lines):
        assert lines[index][0] < indent, f"bad indentation: {lines[index][1]}"
    return result, index


def _load_compose_subset(text: str) -> dict[str, Any]:
    lines = []
    for raw in text.splitlines():
        stripped = raw.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        assert "\t" not in raw[: len(raw) - len(stripped) + 1], "tabs in indentation"
        lines.append((len(raw) - len(stripped), stripped.rstrip()))
    document, end = _block(lines, 0, 0)
    assert end == len(lines)
    assert isinstance(document, dict)
    return document


COMPOSE_TEXT = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load_compose_subset(COMPOSE_TEXT)


def test_compose_parses_with_pyyaml_the_same() -> None:
    yaml = pytest.importorskip(
        "yaml",
        reason="PyYAML is not installed (not a project dependency); the subset reader "
        "in this file still checks the compose file",
    )
    assert yaml.safe_load(COMPOSE_TEXT) == _load_compose_subset(COMPOSE_TEXT)


def test_compose_has_postgres_with_a_volume_and_a_healthcheck(compose: dict[str, Any]) -> None:
    db = compose["services"]["db"]
    assert db["image"] == "postgres:16-alpine"
    volume, _, target = db["volumes"][0].partition(":")
    assert volume in compose["volumes"]
    assert target == "/var/lib/postgresql/data"
    assert db["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "pg_isready" in db["healthcheck"]["test"][1]
    assert db["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_compose_bot_waits_for_the_database(
    compose: dict[str, Any], clean_environment: None
) -> None:
    bot = compose["services"]["bot"]
    build = bot["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert bot["env_file"] == "remindbot.env"
    assert (DEPLOY / "remindbot.env.example").is_file()
    assert bot["depends_on"]["db"]["condition"] == "service_healthy"
    assert bot["restart"] == "unless-stopped"
    url = re.sub(r"\$\{POSTGRES_PASSWORD:\?[^}]*\}", "0123abcd", bot["environment"]["DATABASE_URL"])
    assert url == "postgresql+asyncpg://remindbot:0123abcd@db:5432/remindbot"
    assert load_settings(DATABASE_URL=url).database_url == url
    for volume in bot.get("volumes", []):
        assert volume.partition(":")[0] in compose["volumes"]


def test_compose_substitutes_only_required_variables() -> None:
    """`$$` escapes; `${VAR:?message}` refuses to start without VAR; no default secrets."""
    settings = "\n".join(
        line for line in COMPOSE_TEXT.splitlines() if not line.lstrip().startswith("#")
    )
    for match in re.finditer(r"\$(\$|\{[^}]*\}|\w*)", settings):
        reference = match.group(1)
        if reference == "$":
            continue
        assert reference.startswith("{POSTGRES_PASSWORD:?"), f"unexpected ${reference}"


def test_compose_replicas_profile_adds_a_bot_that_does_not_migrate(
    compose: dict[str, Any],
) -> None:
    """`--profile replicas`: a second bot process, like the first but started after it (the
    first migrates) and without the migrating entrypoint; plain `up` starts one bot."""
    services = compose["services"]
    replica, bot = services["replica"], services["bot"]
    assert replica["profiles"] == ["replicas"]
    assert "profiles" not in bot
    assert "profiles" not in services["db"]
    assert replica["depends_on"]["bot"]["condition"] == "service_healthy"
    assert replica["depends_on"]["db"] == bot["depends_on"]["db"]
    assert replica["entrypoint"] == ["remindbot"]
    assert replica["command"] == ["run"]
    env: dict[str, str] = {}
    for stage in _dockerfile_stages():
        for instruction in stage:
            if instruction.keyword == "ENV":
                env.update(a.partition("=")[::2] for a in instruction.arguments.split())
    assert BINARY.rpartition("/")[0] in env["PATH"].split(":")  # `remindbot` is found
    # One database for all: a SQLite file per container would make each its own bot.
    assert replica["environment"] == bot["environment"]
    assert replica["environment"]["DATABASE_URL"].startswith("postgresql+asyncpg://")
    same = ("build", "env_file", "restart", "volumes", "read_only", "tmpfs", "cap_drop")
    for key in (*same, "security_opt", "stop_grace_period", "healthcheck"):
        assert replica[key] == bot[key], key


def test_compose_and_dockerfile_check_the_same_health_endpoint(compose: dict[str, Any]) -> None:
    test = compose["services"]["bot"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    dockerfile = _healthcheck_command(_only(_dockerfile_stages()[-1], "HEALTHCHECK").arguments)
    assert test[1:] == dockerfile


# --- the healthcheck command, run against a local server -----------------------------------


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _run_healthcheck(port: int, *, variable: str = HTTP_PORT, **environment: str) -> int:
    command = _healthcheck_command(_only(_dockerfile_stages()[-1], "HEALTHCHECK").arguments)
    env = {k: v for k, v in os.environ.items() if k not in (HTTP_PORT, OLD_HTTP_PORT)}
    env = {**env, variable: str(port), **environment}
    result = subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False
    )
    return result.returncode


def test_healthcheck_passes_on_a_healthy_answer(health_server: ThreadingHTTPServer) -> None:
    port = health_server.server_address[1]
    assert _run_healthcheck(port) == 0
    # A proxy configured for reaching Telegram is not used for the local check.
    unroutable = "http://192.0.2.1:9"
    assert _run_healthcheck(port, HTTP_PROXY=unroutable, http_proxy=unroutable) == 0


def test_healthcheck_reads_the_old_port_variable_and_the_new_one_first(
    health_server: ThreadingHTTPServer,
) -> None:
    port = health_server.server_address[1]
    assert _run_healthcheck(port, variable=OLD_HTTP_PORT) == 0
    # An empty value counts as unset, as for the bot; the new name wins over the old one.
    assert _run_healthcheck(port, variable=OLD_HTTP_PORT, **{HTTP_PORT: ""}) == 0
    assert _run_healthcheck(port, **{OLD_HTTP_PORT: "9"}) == 0


def test_healthcheck_fails_on_an_error_or_no_server(
    health_server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = health_server.server_address[1]
    monkeypatch.setattr(_Health, "status", 503)
    assert _run_healthcheck(port) != 0
    health_server.shutdown()
    health_server.server_close()
    assert _run_healthcheck(port) != 0


# --- remindbot.env.example -----------------------------------------------------------------

_ASSIGNMENT = re.compile(r"(?P<commented>#?)(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)")


def _env_example() -> list[tuple[str, str, bool, str]]:
    """(name, value, commented out, the comment line above) for every variable line."""
    lines = (DEPLOY / "remindbot.env.example").read_text(encoding="utf-8").splitlines()
    found = []
    for number, line in enumerate(lines):
        match = _ASSIGNMENT.fullmatch(line)
        if match:
            above = lines[number - 1] if number else ""
            found.append((match["name"], match["value"], bool(match["commented"]), above))
    return found


def test_env_example_lists_exactly_the_settings() -> None:
    names = [name for name, *_ in _env_example()]
    assert len(names) == len(set(names)), "a variable is listed twice"
    assert set(names) == _settings_variables()
    assert not set(names) & (set(RENAMED) | RETIRED), "the example shows the current names"


def test_env_example_describes_every_variable() -> None:
    for name, _, _, above in _env_example():
        assert above.startswith("# "), f"{name}: no comment line above it"
        assert not _ASSIGNMENT.fullmatch(above), f"{name}: no comment line above it"
        assert "default" in above.lower(), f"{name}: the comment should give the default"
        assert "example" in above.lower(), f"{name}: the comment should give an example"


def test_env_example_holds_no_secret() -> None:
    for name, value, commented, _ in _env_example():
        if name in SECRETS and not commented:
            assert value == "", f"{name} should be empty in the example"


def test_env_example_values_are_valid_and_show_the_defaults(
    monkeypatch: pytest.MonkeyPatch, clean_environment: None
) -> None:
    """Uncommented, the example is a valid configuration; the shown defaults are the real ones."""
    values = {name: value for name, value, _, _ in _env_example()}
    values["TELEGRAM_BOT_TOKEN"] = "123456:TEST-token"
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    load_settings()
    assert 0 < int(values[HTTP_PORT]) < 65536
    for monkeyed in values:
        monkeypatch.delenv(monkeyed)
    defaults = load_settings()
    for field_name, field in Settings.model_fields.items():
        default = getattr(defaults, field_name)
        if default is None or default == []:
            continue  # no default: the line shows an example
        alias = field.validation_alias
        assert isinstance(alias, AliasChoices)
        variable = str(alias.choices[0])
        shown = getattr(load_settings(**{variable: values[variable]}), field_name)
        assert shown == default, f"{variable}: the example shows {values[variable]}"


# --- remindbot.service ---------------------------------------------------------------------

UNIT_TEXT = (DEPLOY / "remindbot.service").read_text(encoding="utf-8")


def _unit() -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in UNIT_TEXT.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), "keep unit settings on one line"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{line} before the first section"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
}


def test_unit_runs_migrate_then_run_as_a_dedicated_user() -> None:
    service = _unit()["Service"]
    script = next(iter(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]))
    assert BINARY.endswith(f"/bin/{script}")
    assert service["Type"][-1] in {"simple", "exec"}
    assert service["User"] == ["remindbot"]
    assert service["EnvironmentFile"] == ["/etc/remindbot/remindbot.env"]
    assert service["WorkingDirectory"] == ["/var/lib/remindbot"]
    assert service["StateDirectory"] == ["remindbot"]
    assert service["ExecStartPre"] == [f"{BINARY} migrate"]
    assert service["ExecStart"] == [f"{BINARY} run"]
    assert service["Restart"] == ["on-failure"]
    assert "RestartSec" in service
    assert "TimeoutStopSec" in service
    assert _unit()["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_is_hardened() -> None:
    service = _unit()["Service"]
    for key, value in HARDENING.items():
        assert service.get(key, [None])[-1] == value, key
    assert set(service["RestrictAddressFamilies"][-1].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "/var/lib/remindbot" in " ".join(service["ReadWritePaths"]).split()


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` checks that ExecStart binaries exist, so a copy of the unit
    with /bin/true in place of the venv's remindbot is verified; everything else is as
    shipped. Unknown keys and bad values are only warnings, so any line about the unit fails.
    """
    analyze, true = shutil.which("systemd-analyze"), shutil.which("true")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian/Ubuntu: apt-get install systemd)")
    assert true is not None
    unit = tmp_path / "remindbot.service"
    unit.write_text(UNIT_TEXT.replace(BINARY, true), encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    about_unit = [line for line in output.splitlines() if "remindbot.service" in line]
    assert not about_unit, "\n".join(about_unit)
