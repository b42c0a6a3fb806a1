"""Configuration of the spam stage: ``[spam]`` globally and ``[accounts.spam]`` per account."""

from typing import Literal

from pydantic import Field

from daemon.config.base import Section


class SpamSettings(Section):
    enabled: bool = Field(True, description="set to false to skip classification entirely")
    model_dir: str = Field(
        "",
        description="path of a trained model version to use instead of the active one in the database",
    )
    batch_size: int = Field(32, ge=1, le=512, description="messages classified per batch (1-512)")
    int8: bool = Field(
        False,
        description="run the transformer with dynamic int8 quantization: faster on CPU, measured slightly "
        "less accurate (true/false)",
    )
    runtime: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="'auto' runs the transformer with ONNX Runtime when the model version has model.onnx "
        "(same scores, faster), else PyTorch; 'onnx' or 'torch' force one",
    )
    threads: int = Field(0, ge=0, le=256, description="torch threads for classification; 0 = all cores")
    reload_seconds: float = Field(
        30.0, gt=0, le=3600,
        description="how often the daemon checks for a newly activated model version and switches to it (seconds)",
    )


class AccountSpamSettings(Section):
    """What a verdict does to the mailbox of one account."""

    move_spam: bool = Field(True, description="move spam to the Junk folder (true/false)")
    junk_folder: str = Field(
        "", description="folder for spam; empty means the folder with SPECIAL-USE \\Junk, else 'Junk'"
    )
    spam_keyword: str = Field("$Junk", description="IMAP keyword set on spam; empty = none")
    unsure_action: Literal["keyword", "move", "none"] = Field(
        "keyword", description="'keyword' (flag it in place), 'move' (to unsure_folder) or 'none'"
    )
    unsure_folder: str = Field("Junk/Unsure", description="folder for unsure mail when unsure_action = 'move'")
    unsure_keyword: str = Field("$Unsure", description="IMAP keyword set on unsure mail; empty = none")
    ham_keyword: str = Field("", description="IMAP keyword set on ham, e.g. '$NotJunk'; empty = none")
