"""Configuration of the learning loop per account: ``[accounts.learning]``.

What the person already has (their Junk folder, the mail they kept) and what they do later (moving
mail in and out of Junk, ``$Junk``/``$NotJunk`` set by their mail client, replies they send) are
the labels a spam filter for *this* mailbox learns from.
"""

from pydantic import Field

from daemon.config.base import Section


class AccountLearningSettings(Section):
    bootstrap: bool = Field(
        False,
        description="on the first connect, learn once from the mailbox itself: the Junk folder (and its "
        "subfolders) is spam, mail the person kept (read, answered or filed; not Trash, Junk or Drafts) is ham",
    )
    bootstrap_per_class: int = Field(
        500, ge=1, le=100_000, description="newest messages per class taken by the bootstrap (1-100000)"
    )
    watch_corrections: bool = Field(
        True,
        description="watch the mailbox for corrections: moves into and out of Junk, $Junk/$NotJunk keywords, "
        "replies sent from the account (true/false)",
    )
    junk_folder: str = Field(
        "",
        description="the person's Junk folder; empty = [accounts.spam] junk_folder, else SPECIAL-USE \\Junk, "
        "else 'Junk'. Its subfolders count as Junk",
    )
    trash_folder: str = Field(
        "", description="the Trash folder (a move there is no label); empty = SPECIAL-USE \\Trash, else 'Trash'"
    )
    all_folders: bool = Field(
        True,
        description="look for corrections in every folder of the mailbox (a message moved out of Junk into "
        "any folder); false = only the watched folders, Junk and Trash",
    )
    rescan_seconds: float = Field(
        60.0, gt=0, description="how often the mailbox is checked for corrections (seconds)"
    )
    junk_grace_days: float = Field(
        3.0, ge=0.0, le=365.0,
        description="spam filed to Junk that nobody moved out within this many days becomes a spam label "
        "(left_in_junk), as `sa-learn --spam Junk` would; deleting it from Junk confirms it (days; 0 = off)",
    )
    implicit_labels: bool = Field(
        True,
        description="a message in a thread the account replied to is ham; mail from an address the account "
        "wrote to counts as weaker ham evidence (true/false)",
    )
    sender_evidence_weight: float = Field(
        0.5, ge=0.0, le=1.0,
        description="weight of the ham label given to mail from an address the account wrote to (0-1; 0 = none)",
    )
