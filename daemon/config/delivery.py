"""Configuration of reply delivery: ``[accounts.delivery]`` per account.

An approved draft becomes a reply either in the account's Drafts folder (the default: the
person sends it from their own mail client) or through a submission server (``mode = "smtp"``).
Secrets follow the IMAP password's pattern: an environment variable or a file, never the TOML.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from daemon.config.base import Section


class AccountDeliverySettings(Section):
    mode: Literal["drafts_folder", "smtp"] = Field(
        "drafts_folder",
        description="'drafts_folder' (APPEND the reply to Drafts, the person sends it) or 'smtp' "
        "(send it through smtp_host)",
    )
    from_address: str = Field(
        "", description="the From address of replies; empty = the account's login when it is an address"
    )
    from_name: str = Field("", description="the display name in From (e.g. 'Example Support'); empty = none")
    reply_all: bool = Field(False, description="also copy (Cc) the original's other recipients, minus our own")
    drafts_folder: str = Field(
        "", description="folder for delivered drafts; empty = the SPECIAL-USE \\Drafts folder, else 'Drafts'"
    )
    sent_folder: str = Field(
        "", description="folder watched for sent replies (and where smtp copies go); empty = \\Sent, else 'Sent'"
    )
    smtp_host: str = Field("", description="submission server host (required for mode = 'smtp')")
    smtp_port: int = Field(0, ge=0, le=65535, description="submission port; 0 = 465 for implicit TLS, else 587")
    smtp_tls: Literal["starttls", "implicit", "none"] = Field(
        "starttls", description="'starttls' (port 587), 'implicit' (port 465) or 'none' (local relays only)"
    )
    smtp_user: str = Field("", description="SMTP login; empty = no AUTH")
    smtp_password_env: str = Field("", description="name of the environment variable holding the SMTP password")
    smtp_password_file: str = Field(
        "", description="file holding the SMTP password, e.g. '$CREDENTIALS_DIRECTORY/smtp' (systemd LoadCredential=)"
    )
    append_to_sent: bool = Field(True, description="with mode = 'smtp': also APPEND each sent reply to Sent")
    auto_send: bool = Field(
        False,
        description="deliver pending drafts whose confidence is at least auto_send_threshold without a "
        "person's approval (off by default; logged as a warning at every start)",
    )
    auto_send_threshold: float = Field(
        0.9, ge=0, le=1, description="confidence (0-1) a draft needs to go out by itself when auto_send is on"
    )
    outcome_check_seconds: float = Field(
        60.0, gt=0, description="how often the Sent folder is checked for replies the person sent"
    )

    @model_validator(mode="after")
    def _smtp_needs_a_server(self) -> AccountDeliverySettings:
        if self.mode == "smtp" and not self.smtp_host:
            raise ValueError("mode = 'smtp' needs smtp_host (the submission server)")
        if self.smtp_user and not (self.smtp_password_env or self.smtp_password_file):
            raise ValueError(
                "smtp_user is set but no password source: set smtp_password_env or smtp_password_file; "
                "the password itself never goes into the TOML file"
            )
        return self

    @property
    def effective_smtp_port(self) -> int:
        if self.smtp_port:
            return self.smtp_port
        return 465 if self.smtp_tls == "implicit" else 587
