"""Configuration of the spam stage: ``[spam]`` globally and ``[accounts.spam]`` per account."""

from pydantic import Field

from daemon.settings_base import Section


class SpamSettings(Section):
    enabled: bool = Field(True, description="set to false to skip classification entirely")
    model_dir: str = Field(
        "",
        description="path of a trained model version to use instead of the active one in the database",
    )
    batch_size: int = Field(32, ge=1, le=512, description="messages classified per batch (1-512)")


class AccountSpamSettings(Section):
    """What a verdict does to the mailbox of one account."""

    move_spam: bool = Field(True, description="move spam to the Junk folder (true/false)")
    junk_folder: str = Field(
        "", description="folder for spam; empty means the folder with SPECIAL-USE \\Junk, else 'Junk'"
    )
