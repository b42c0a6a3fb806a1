"""The pydantic base every configuration section derives from, and the error and secret reader they share.

Kept apart from ``daemon.config`` so that each stage package can declare its own section
without importing the whole configuration (and without import cycles).
"""

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class ConfigError(Exception):
    """A configuration problem, worded for the admin: key, what is wrong, how to fix it."""


def read_secret_file(key: str, configured: str) -> str:
    """A secret from a file, read when needed so a rotated credential is picked up.

    ``$CREDENTIALS_DIRECTORY`` (where systemd's ``LoadCredential=`` puts secrets) and other
    variables in the path are expanded; an error names the key, never the content.
    """
    path = Path(os.path.expandvars(configured))
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror} (is the credential loaded?)") from None


def read_secret(key: str, file: str, env: str) -> str:
    """A secret from ``file`` when one is configured, else from the environment variable ``env``.

    ``key`` names the setting (``accounts.support``, ``web``), so an error says which ``<key>.*_file``
    or ``<key>.*_env`` to fix; the secret itself is never in a message.
    """
    if file:
        return read_secret_file(f"{key}_file", file)
    value = os.environ.get(env)
    if value is None:
        raise ConfigError(f"{key}_env: environment variable {env} is not set; export it or use "
                          f"{key.rsplit('.', 1)[-1]}_file")
    return value


class Section(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
