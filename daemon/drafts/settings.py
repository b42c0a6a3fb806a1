"""Configuration of the drafting stage: ``[drafts]`` globally and ``[accounts.drafts]`` per account."""

from pydantic import Field

from daemon.settings_base import Section


class DraftSettings(Section):
    enabled: bool = Field(False, description="set to true to draft replies to support questions")


class AccountDraftSettings(Section):
    enabled: bool = Field(True, description="draft replies for mail of this account (true/false)")
