"""Configuration of the review page: ``[web]``.

The page shows customer mail and lets a person approve replies, so it is off by default, listens
on the loopback interface unless told otherwise, and needs a password that, like every other
secret, never goes into the TOML file: ``password_env`` names an environment variable,
``password_file`` a file (for example a systemd credential).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from daemon.config.base import ConfigError, Section, read_secret

MIN_PASSWORD_LENGTH = 8


class WebSettings(Section):
    enabled: bool = Field(
        False, description="true: `mailsense run` also serves the review page (`mailsense web` serves it alone)"
    )
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="address to listen on; keep 127.0.0.1 and open the page through an SSH tunnel",
    )
    port: int = Field(8080, ge=1, le=65535, description="port of the review page (1-65535)")
    username: str = Field(
        "reviewer",
        pattern=r"^[A-Za-z0-9_.@-]*$",
        max_length=64,
        description="the login name, recorded as reviewed_by on every decision; empty: no name is asked "
        "and decisions are recorded as 'web'",
    )
    password_env: str = Field("", description="name of the environment variable holding the login password")
    password_file: str = Field(
        "", description="file holding the login password, e.g. '$CREDENTIALS_DIRECTORY/web-password'"
    )
    secret_key_file: str = Field(
        "",
        description="file holding the key that signs session cookies (32+ characters); empty: a key is "
        "generated once and kept in <state_dir>/web-secret-key",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="extra host names the page may be reached by (a reverse proxy's name); localhost, "
        "127.0.0.1, ::1 and `host` are always allowed",
    )
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="hours a login lasts (at most 720)")

    @model_validator(mode="after")
    def _password_source(self) -> WebSettings:
        if self.enabled and not self.password_env and not self.password_file:
            raise ValueError(
                "the review page needs a password source: set password_env (an environment variable name) "
                "or password_file; the password itself never goes into the TOML file"
            )
        return self

    @property
    def reviewer(self) -> str:
        """The name recorded as ``reviewed_by`` for decisions taken on the page."""
        return self.username or "web"

    def password(self) -> str:
        """Read the login password when it is needed, so a rotated credential is picked up."""
        if not self.password_file and not self.password_env:
            raise ConfigError(
                "web.password_env: the review page needs a password: set web.password_env (an environment "
                "variable name) or web.password_file"
            )
        value = read_secret("web.password", self.password_file, self.password_env)
        if len(value) < MIN_PASSWORD_LENGTH:
            key = "web.password_file" if self.password_file else "web.password_env"
            raise ConfigError(f"{key}: the password is shorter than {MIN_PASSWORD_LENGTH} characters; "
                                "choose a longer one")
        return value
