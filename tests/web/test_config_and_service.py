"""``[web]`` in the configuration, `mailsense web` and the page inside `mailsense run`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

from daemon.config import ConfigError, load_settings
from tests.helpers import REPO, free_port, wait_for
from tests.web.conftest import PASSWORD, PASSWORD_ENV


def test_the_example_config_has_the_web_section_switched_off():
    settings = load_settings(REPO / "config" / "mailsense.toml", environ={})
    assert settings.web.enabled is False and settings.web.host == "127.0.0.1" and settings.web.port == 8080
    assert settings.web.reviewer == "reviewer"


@pytest.mark.parametrize(("toml", "message"), [
    ("[web]\nenabled = true\n", "web: the review page needs a password source: set password_env"),
    ("[web]\nport = 0\n", "web.port: Input should be greater than or equal to 1 (expected: port of the review page"),
    ("[web]\nusername = \"ann smith\"\n", "web.username: String should match pattern"),
    ("[web]\ncolour = \"blue\"\n", "web.colour: unknown key"),
])
def test_bad_web_settings_name_the_key(tmp_path, toml, message):
    path = tmp_path / "mailsense.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    assert message in str(error.value)


def test_check_config_reads_the_web_password(tmp_path):
    path = tmp_path / "mailsense.toml"
    path.write_text(f'[web]\nenabled = true\npassword_env = "{PASSWORD_ENV}"\n')
    with pytest.raises(ConfigError, match=f"web.password_env: environment variable {PASSWORD_ENV} is not set"):
        load_settings(path, environ={}).check_secrets()
    assert load_settings(path, environ={}).web.reviewer == "reviewer"
    (tmp_path / "short").write_text("abc\n")
    path.write_text(f'[web]\nenabled = true\npassword_file = "{tmp_path / "short"}"\nusername = ""\n')
    settings = load_settings(path, environ={})
    assert settings.web.reviewer == "web"
    with pytest.raises(ConfigError, match=r"web\.password_file: the password is shorter than 8 characters"):
        settings.check_secrets()


@pytest.mark.e2e
def test_mailsense_web_without_a_password_exits_78_naming_the_key(tmp_path):
    path = tmp_path / "mailsense.toml"
    path.write_text(f'[daemon]\nstate_dir = "{tmp_path}"\n')
    proc = subprocess.run([sys.executable, "-m", "daemon.cli", "-c", str(path), "web"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 78
    assert "web.password_env: the review page needs a password" in proc.stderr


@pytest.mark.e2e
def test_mailsense_web_serves_the_page_alone_until_sigterm(db_url, tmp_path):
    port = free_port()
    path = tmp_path / "mailsense.toml"
    path.write_text(f'[daemon]\nstate_dir = "{tmp_path}"\n[database]\nurl = "{db_url}"\n'
                    f'[web]\npassword_env = "{PASSWORD_ENV}"\n')
    env = {**os.environ, PASSWORD_ENV: PASSWORD}
    proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "-c", str(path), "web", "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # uvicorn's own start lines are kept quiet
        assert f"review page on http://localhost:{port}/ (log in as reviewer)" in first, first
        assert httpx.get(f"http://localhost:{port}/login").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()


def test_mailsense_run_serves_the_page_and_stops_cleanly_on_sigterm(daemon_factory, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    port = free_port()
    daemon = daemon_factory(web__enabled=True, web__port=port, web__password_env=PASSWORD_ENV).start()
    daemon.wait_log(f"review page on http://localhost:{port}/", timeout=90)
    base = f"http://localhost:{port}"
    assert httpx.get(f"{base}/", follow_redirects=False).headers["location"] == "/login"
    login = httpx.get(f"{base}/login")
    assert login.status_code == 200 and 'name="password"' in login.text
    assert httpx.post(f"{base}/login", data={"password": PASSWORD}).status_code == 403  # no Origin, no token
    assert daemon.terminate() == 0
    assert "stopped" in daemon.log()
    wait_for(lambda: _refused(base), 5, "the port to be closed")


def _refused(base: str) -> bool:
    try:
        httpx.get(f"{base}/login", timeout=1)
    except httpx.TransportError:
        return True
    return False
