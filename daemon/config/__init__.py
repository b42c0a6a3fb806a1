"""Settings from a TOML file plus ``MAILSENSE_*`` environment overrides, validated once at start.

Every error names the offending key and says how to fix it, because the person reading it is
usually an admin looking at ``journalctl`` and not at our source.

Environment overrides use ``__`` between levels: ``MAILSENSE_DATABASE__URL``,
``MAILSENSE_DAEMON__WORKERS``; accounts are addressed by name:
``MAILSENSE_ACCOUNTS__SUPPORT__HOST`` overrides ``host`` of the account named ``support``.
Values are parsed as TOML scalars when they look like one (``true``, ``993``), else kept as text.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

# ConfigError and read_secret_file live in base so that section modules can use them; imported from here.
from daemon.config.base import ConfigError as ConfigError
from daemon.config.base import Section, read_secret
from daemon.config.base import read_secret_file as read_secret_file
from daemon.config.delivery import AccountDeliverySettings
from daemon.config.drafts import AccountDraftSettings, DraftSettings
from daemon.config.kb import KBSettings
from daemon.config.learning import AccountLearningSettings
from daemon.config.learning_schedule import LearningSettings
from daemon.config.periods import START_FORMS, normalize_start_from, parse_days
from daemon.config.spam import AccountSpamSettings, SpamSettings
from daemon.config.web import WebSettings

ENV_PREFIX = "MAILSENSE_"
DEFAULT_CONFIG_PATHS = (Path("/etc/mailsense/mailsense.toml"),)
SERVICE_STATE_DIR = Path("/var/lib/mailsense")  # the systemd unit's StateDirectory=mailsense


class TLSMode(StrEnum):
    implicit = "implicit"
    starttls = "starttls"
    none = "none"


def default_state_dir(environ: Mapping[str, str] | None = None) -> tuple[Path, str]:
    """Where the service keeps its state, and why: an admin shell must find the service's database.

    systemd sets ``$STATE_DIRECTORY`` for the service only, so a shell without it still looks in the
    unit's ``/var/lib/mailsense`` when that exists, and only then in ``./state`` (a development checkout).
    """
    environ = os.environ if environ is None else environ
    if environ.get("STATE_DIRECTORY"):
        return Path(environ["STATE_DIRECTORY"].split(":")[0]), "$STATE_DIRECTORY"
    if SERVICE_STATE_DIR.is_dir():
        return SERVICE_STATE_DIR, "the service's state directory"
    return Path("state"), "default ./state in the current directory"


class DaemonSettings(Section):
    state_dir: Path = Field(
        default_factory=lambda: default_state_dir()[0],
        description="writable directory for the embedded database and models "
        "(default: $STATE_DIRECTORY, else /var/lib/mailsense if it exists, else ./state)",
    )
    workers: int = Field(2, ge=1, le=64, description="pipeline workers per daemon (1-64)")
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$", description="DEBUG, INFO, WARNING or ERROR")
    log_format: str = Field("text", pattern="^(text|json)$", description="'text' or 'json'")
    shutdown_timeout: float = Field(20.0, gt=0, description="seconds to drain in-flight work on SIGTERM")
    health_port: int = Field(0, ge=0, le=65535, description="port of /healthz and /metrics on 127.0.0.1; 0 = off")


class DatabaseSettings(Section):
    url: str = Field(
        "",
        description="PostgreSQL URL (postgresql://user@host/db); empty = embedded server in state_dir. "
        "Put passwords in MAILSENSE_DATABASE__URL or url_file, not in the file",
    )
    url_file: str = Field("", description="file holding the URL (for example a systemd credential)")
    pool_size: int = Field(5, ge=1, le=100, description="connections per daemon (1-100)")


class PipelineSettings(Section):
    max_attempts: int = Field(5, ge=1, le=100, description="failures before a message is parked (1-100)")
    parse_budget_seconds: float = Field(
        5.0, gt=0, le=600, description="time one message may take to parse; over it, it is quarantined with the reason"
    )
    lease_seconds: int = Field(
        300, ge=10, description="a claim's lease, renewed while the batch runs; a batch may take this long "
        "per message before its worker counts as stuck (>= 10)"
    )
    retry_base_seconds: float = Field(5.0, gt=0, description="first retry delay; doubles per attempt")
    poll_seconds: float = Field(1.0, gt=0, description="how often idle workers look for work")
    heartbeat_seconds: float = Field(
        10.0, gt=0, description="how often a daemon records that it lives; after 3 missed beats its leases "
        "are freed and its folders no longer count as connected"
    )
    dependency_wait_seconds: float = Field(
        30.0, gt=0, description="how long a stage waits when the service it needs (IMAP server, LLM endpoint) "
        "is unreachable before it tries again; no attempt is counted"
    )


class AccountSettings(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="a short unique name: letters, digits, _ . -")
    host: str = Field(min_length=1, description="the IMAP server's host name")
    port: int = Field(0, ge=0, le=65535, description="IMAP port; 0 = 993 for implicit TLS, else 143")
    tls: TLSMode = Field(TLSMode.implicit, description="'implicit' (port 993), 'starttls' or 'none'")
    verify_cert: bool = Field(True, description="verify the server certificate (keep true in production)")
    ca_file: str = Field("", description="extra CA bundle or self-signed certificate to trust")
    user: str = Field(min_length=1, description="the IMAP login name")
    password_env: str = Field("", description="name of the environment variable holding the password")
    password_file: str = Field(
        "", description="file holding the password, e.g. '$CREDENTIALS_DIRECTORY/support' (systemd LoadCredential=)"
    )
    folders: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1, description="folders to watch")
    idle: bool = Field(True, description="use IMAP IDLE when the server supports it")
    poll_seconds: float = Field(60.0, gt=0, description="polling interval when IDLE is off or unsupported")
    idle_renew_seconds: float = Field(540.0, gt=0, le=1740, description="re-issue IDLE after this long (<= 1740)")
    timeout_seconds: float = Field(60.0, gt=0, description="socket timeout for every IMAP command")
    fetch_batch: int = Field(25, ge=1, le=1000, description="messages fetched per round trip (1-1000)")
    fetch_batch_bytes: int = Field(
        8 * 1024 * 1024, ge=64 * 1024, description="bytes fetched per round trip at most (a larger message comes alone)"
    )
    max_message_bytes: int = Field(
        50 * 1024 * 1024, ge=64 * 1024,
        description="larger messages are recorded by their headers, quarantined, and left in the mailbox",
    )
    # Where ingestion starts on a folder's first connect, so that years of existing mail are not
    # classified, filed and drafted for; recorded per folder, never re-applied (daemon/ingest/imap.py).
    start_from: str = Field("new", description=START_FORMS)
    spam: AccountSpamSettings = Field(default_factory=AccountSpamSettings)
    drafts: AccountDraftSettings = Field(default_factory=AccountDraftSettings)
    delivery: AccountDeliverySettings = Field(default_factory=AccountDeliverySettings)
    learning: AccountLearningSettings = Field(default_factory=AccountLearningSettings)

    @field_validator("start_from")
    @classmethod
    def _start_from(cls, value: str) -> str:
        return normalize_start_from(value)

    @model_validator(mode="after")
    def _password_source(self) -> AccountSettings:
        if not self.password_env and not self.password_file:
            raise ValueError(
                "no password source: set password_env (an environment variable name) or password_file; "
                "the password itself never goes into the TOML file"
            )
        return self

    @property
    def start_window_days(self) -> int | None:
        """Days of existing mail taken on the first connect (``"7d"`` → 7); None for "new" and "all"."""
        return parse_days(self.start_from)

    @property
    def effective_port(self) -> int:
        if self.port:
            return self.port
        return 993 if self.tls is TLSMode.implicit else 143

    def password(self) -> str:
        """Read the secret at connect time, so a rotated credential file is picked up."""
        return read_secret(f"accounts.{self.name}.password", self.password_file, self.password_env)

    def smtp_password(self) -> str:
        """The password for ``[accounts.delivery] smtp_user``, read at send time like the IMAP one."""
        delivery = self.delivery
        return read_secret(f"accounts.{self.name}.delivery.smtp_password", delivery.smtp_password_file,
                           delivery.smtp_password_env)


class SmtpIngressSettings(Section):
    enabled: bool = Field(False, description="accept mail over SMTP/LMTP into the pipeline")
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8025, ge=1, le=65535, description="port to listen on")
    lmtp: bool = Field(False, description="speak LMTP instead of SMTP")
    account: str = Field("smtp", pattern=r"^[A-Za-z0-9_.-]+$", description="account name the mail is filed under")
    max_message_bytes: int = Field(50 * 1024 * 1024, ge=1024, description="largest accepted message in bytes")
    max_sessions: int = Field(
        8, ge=1, le=1000, description="sessions at once; more get 421 (memory is at most this × max_message_bytes)"
    )


class Settings(Section):
    # Where daemon.state_dir came from, said by commands so an admin sees which database they touch.
    _state_dir_source: str = PrivateAttr("default")
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    accounts: list[AccountSettings] = Field(default_factory=list)
    smtp_ingress: SmtpIngressSettings = Field(default_factory=SmtpIngressSettings)
    spam: SpamSettings = Field(default_factory=SpamSettings)
    kb: KBSettings = Field(default_factory=KBSettings)
    drafts: DraftSettings = Field(default_factory=DraftSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    learning: LearningSettings = Field(default_factory=LearningSettings)

    @field_validator("accounts")
    @classmethod
    def _unique_names(cls, accounts: list[AccountSettings]) -> list[AccountSettings]:
        seen: set[str] = set()
        for account in accounts:
            if account.name in seen:
                raise ValueError(f"account name {account.name!r} is used twice; names must be unique")
            seen.add(account.name)
        return accounts

    def account(self, name: str) -> AccountSettings:
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(name)

    @property
    def state_dir_source(self) -> str:
        return self._state_dir_source

    def database_url(self) -> str:
        """The configured URL, or '' for the embedded server; ``url_file`` may name ``$CREDENTIALS_DIRECTORY``."""
        if self.database.url_file:
            return read_secret_file("database.url_file", self.database.url_file)
        return self.database.url

    def check_secrets(self) -> int:
        """Read every secret the daemon will need, as it will read them; returns how many were read.

        ``check-config`` runs this as ``ExecStartPre=`` so a missing credential stops the start with
        the key named, instead of failing an hour later at the first reconnect.
        """
        count = 0
        if self.database.url_file:
            self.database_url()
            count += 1
        for account in self.accounts:
            account.password()
            count += 1
            if account.delivery.mode == "smtp" and account.delivery.smtp_user:
                account.smtp_password()
                count += 1
        if self.web.enabled:
            self.web.password()
            count += 1
            if self.web.secret_key_file:
                read_secret_file("web.secret_key_file", self.web.secret_key_file)
                count += 1
        return count


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Merge ``MAILSENSE_SECTION__KEY`` variables into the parsed TOML (accounts by name)."""
    for key, raw in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX) :].split("__")]
        value = _parse_env_value(raw)
        if path[0] == "accounts":
            if len(path) < 3:
                raise ConfigError(f"{key}: use MAILSENSE_ACCOUNTS__<NAME>__<KEY>")
            accounts = data.setdefault("accounts", [])
            match = next((a for a in accounts if str(a.get("name", "")).lower() == path[1]), None)
            if match is None:
                match = {"name": path[1]}
                accounts.append(match)
            target, rest = match, path[2:]
        else:
            target, rest = data, path
        for part in rest[:-1]:
            node = target.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {part} is not a section")
            target = node
        target[rest[-1]] = value
    return data


def _error_location(settings_data: dict[str, Any], loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    node: Any = settings_data
    for item in loc:
        if isinstance(item, int) and isinstance(node, list) and item < len(node):
            name = node[item].get("name") if isinstance(node[item], dict) else None
            parts[-1] = f"{parts[-1]}[{name or item}]"
            node = node[item]
            continue
        parts.append(str(item))
        node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


def _field_hint(loc: tuple[Any, ...]) -> str:
    """The field description, used as the 'how to fix' half of an error message."""
    model: Any = Settings
    hint = ""
    for item in loc:
        if isinstance(item, int) or model is None:
            continue
        field = getattr(model, "model_fields", {}).get(item)
        if field is None:
            return ""
        hint = field.description or ""
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        model = next((a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, Section)), None)
    return hint


def format_validation_error(exc: ValidationError, data: dict[str, Any], source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = _error_location(data, loc)
        if err["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key (check the spelling against config/mailsense.toml)")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        hint = _field_hint(loc)
        lines.append(f"  {where}: {msg}" + (f" (expected: {hint})" if hint else ""))
    return "\n".join(lines)


def find_config_path(explicit: str | os.PathLike[str] | None) -> Path | None:
    if explicit:
        return Path(explicit)
    if env := os.environ.get("MAILSENSE_CONFIG"):
        return Path(env)
    return next((p for p in DEFAULT_CONFIG_PATHS if p.exists()), None)


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read, merge and validate; raise ConfigError with every problem listed."""
    environ = os.environ if environ is None else environ
    config_path = find_config_path(path)
    data: dict[str, Any] = {}
    source = "defaults and environment"
    if config_path is not None:
        source = str(config_path)
        try:
            data = tomllib.loads(config_path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"configuration file {config_path} not found; copy config/mailsense.toml there") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path} is not valid TOML: {exc}") from None
    data = apply_env_overrides(data, environ)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, data, source)) from None
    state_dir = settings.daemon.state_dir
    if "MAILSENSE_DAEMON__STATE_DIR" in environ:
        source = "MAILSENSE_DAEMON__STATE_DIR"
    elif "state_dir" in data.get("daemon", {}):
        source = f"daemon.state_dir in {config_path}"
        if config_path is not None and not state_dir.is_absolute():
            # A relative state_dir in a file means relative to that file, not to wherever we were started.
            state_dir = (config_path.parent / state_dir).resolve()
    else:
        state_dir, source = default_state_dir(environ)
    settings = settings.model_copy(
        update={"daemon": settings.daemon.model_copy(update={"state_dir": state_dir.absolute()})}
    )
    settings._state_dir_source = source
    return settings
