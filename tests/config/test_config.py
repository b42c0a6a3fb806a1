"""Configuration: errors name the key and the fix; environment overrides; secrets stay out of files."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import ConfigError, load_settings

GOOD = """
[daemon]
workers = 3

[[accounts]]
name = "support"
host = "imap.example.com"
user = "support@example.com"
password_env = "SUPPORT_PW"
folders = ["INBOX", "Support"]
"""


def write(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "mailsense.toml"
    path.write_text(content)
    return path


def test_valid_file_and_defaults(tmp_path):
    settings = load_settings(write(tmp_path, GOOD), environ={})
    account = settings.account("support")
    assert settings.daemon.workers == 3
    assert account.effective_port == 993 and account.verify_cert is True
    assert account.folders == ["INBOX", "Support"]


def test_environment_overrides_sections_and_accounts_by_name(tmp_path):
    env = {"MAILSENSE_DAEMON__WORKERS": "5", "MAILSENSE_ACCOUNTS__SUPPORT__PORT": "1143",
           "MAILSENSE_ACCOUNTS__SUPPORT__TLS": "starttls", "MAILSENSE_DATABASE__URL": "postgresql://x@db/mail"}
    settings = load_settings(write(tmp_path, GOOD), environ=env)
    assert settings.daemon.workers == 5
    assert settings.account("support").effective_port == 1143
    assert settings.account("support").tls.value == "starttls"
    assert settings.database_url() == "postgresql://x@db/mail"


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('port = "imap"', "accounts[support].port"),
        ('tls = "ssl"', "'implicit', 'starttls' or 'none'"),
        ("hots = 1", "accounts[support].hots: unknown key"),
    ],
)
def test_errors_name_the_key_and_the_fix(tmp_path, snippet, expected):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, GOOD + snippet + "\n"), environ={})
    assert expected in str(err.value)


def test_missing_password_source_says_how_to_fix(tmp_path):
    content = GOOD.replace('password_env = "SUPPORT_PW"\n', "")
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, content), environ={})
    assert "accounts[support]" in str(err.value) and "password_env" in str(err.value)


def test_bad_section_value_and_toml_syntax(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "[daemon]\nworkers = 0\n"), environ={})
    assert "daemon.workers" in str(err.value) and "1-64" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "[daemon\n"), environ={})
    assert "not valid TOML" in str(err.value)


def test_password_from_env_or_file_never_from_toml(tmp_path):
    settings = load_settings(write(tmp_path, GOOD), environ={})
    with pytest.raises(ConfigError) as err:
        settings.account("support").password()
    assert "SUPPORT_PW is not set" in str(err.value)
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    content = GOOD.replace('password_env = "SUPPORT_PW"', f'password_file = "{secret}"')
    assert load_settings(write(tmp_path, content), environ={}).account("support").password() == "s3cret"
    with pytest.raises(ConfigError):
        load_settings(write(tmp_path, GOOD.replace("password_env", "password")), environ={})


def test_duplicate_account_names_are_rejected(tmp_path):
    twice = GOOD + GOOD.split("[[accounts]]", 1)[1].join(["[[accounts]]", ""])
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, twice), environ={})
    assert "used twice" in str(err.value)


def test_cli_exits_78_with_the_message(tmp_path, capsys):
    from daemon.cli import main

    code = main(["-c", str(write(tmp_path, "[daemon]\nworkers = 'many'\n")), "check-config"])
    assert code == 78
    assert "daemon.workers" in capsys.readouterr().err


def test_the_example_config_is_valid():
    from tests.helpers import REPO

    settings = load_settings(REPO / "config" / "mailsense.toml", environ={})
    assert settings.accounts == [] and settings.smtp_ingress.enabled is False


def test_url_file_reads_a_systemd_credential(tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "database-url").write_text("postgresql://mailsense:pw@db.example.com/mailsense\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    settings = load_settings(write(tmp_path, '[database]\nurl_file = "$CREDENTIALS_DIRECTORY/database-url"\n'),
                             environ={})
    assert settings.database_url() == "postgresql://mailsense:pw@db.example.com/mailsense"


def test_check_config_reads_every_secret_and_names_the_missing_one(tmp_path, monkeypatch, capsys):
    from daemon.cli import main

    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    config = write(tmp_path, GOOD)
    monkeypatch.delenv("SUPPORT_PW", raising=False)
    assert main(["-c", str(config), "check-config"]) == 78
    assert "password_env" in capsys.readouterr().err

    monkeypatch.setenv("SUPPORT_PW", "not-printed-anywhere")
    assert main(["-c", str(config), "check-config"]) == 0
    out, err = capsys.readouterr()
    assert "1 secret(s) readable" in out and "not-printed-anywhere" not in out + err
