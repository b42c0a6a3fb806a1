"""``[accounts.delivery]``: safe defaults, errors that name the key, the auto-send warning."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from daemon.config import ConfigError, Settings, load_settings
from daemon.delivery.deliver import Deliverer


def settings(**delivery: Any) -> Settings:
    return Settings.model_validate({"accounts": [{"name": "support", "host": "imap.example.com",
                                                  "user": "support@example.com", "password_env": "PW",
                                                  "delivery": delivery}]})


def test_defaults_put_replies_into_drafts_and_send_nothing_by_themselves() -> None:
    d = settings().accounts[0].delivery
    assert d.mode == "drafts_folder" and not d.auto_send and not d.reply_all and d.append_to_sent
    assert d.drafts_folder == d.sent_folder == ""


def test_smtp_needs_a_host_and_a_password_source(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "m.toml"
    config.write_text('[[accounts]]\nname = "support"\nhost = "h"\nuser = "u"\npassword_env = "PW"\n'
                      '[accounts.delivery]\nmode = "smtp"\n')
    with pytest.raises(ConfigError, match=r"accounts\[support\]\.delivery: .*smtp_host"):
        load_settings(config, environ={})
    with pytest.raises(ValueError, match="smtp_password_env or smtp_password_file"):
        settings(mode="smtp", smtp_host="smtp.example.com", smtp_user="u")


def test_smtp_password_comes_from_the_environment_or_a_file(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    account = settings(mode="smtp", smtp_host="s", smtp_user="u", smtp_password_env="SMTP_PW").accounts[0]
    monkeypatch.delenv("SMTP_PW", raising=False)
    with pytest.raises(ConfigError, match=r"accounts\.support\.delivery\.smtp_password_env"):
        account.smtp_password()
    monkeypatch.setenv("SMTP_PW", "s3cret")
    assert account.smtp_password() == "s3cret"
    (tmp_path / "pw").write_text("from-file\n")
    account = settings(mode="smtp", smtp_host="s", smtp_user="u", smtp_password_file=str(tmp_path / "pw")).accounts[0]
    assert account.smtp_password() == "from-file"
    assert account.delivery.effective_smtp_port == 587


def test_auto_send_is_announced_loudly(caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level("WARNING"):
        Deliverer(settings(), "postgresql://unused", threading.Event()).announce()
        assert not caplog.records
        Deliverer(settings(auto_send=True, auto_send_threshold=0.95), "postgresql://unused",
                  threading.Event()).announce()
    assert "auto_send is ON" in caplog.text and "0.95" in caplog.text
