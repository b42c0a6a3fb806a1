"""Configuration of scheduled retraining and housekeeping: ``[learning]``.

The jobs themselves live in ``daemon/learning/retrain.py`` and ``daemon/learning/housekeeping.py``;
``mailsense run`` schedules them (``daemon/schedule/``). Sizes and epochs are settings so a
small machine (or a test) can run a complete retrain in seconds.
"""

import re

from pydantic import Field, field_validator

from daemon.config.base import Section

CRON_FIELD = re.compile(r"[0-9A-Za-z*/,?-]+")


class LearningSettings(Section):
    schedule: bool = Field(True, description="run the jobs below on a schedule inside `mailsense run` (true/false)")
    token_refresh_seconds: float = Field(
        900.0, gt=0, description="how often to refit the token statistics and thresholds when new labels exist "
        "(seconds; default 15 min)",
    )
    fine_tune_cron: str = Field(
        "0 3 * * *", description="when the full fine-tune runs, as a crontab line (minute hour day month weekday, "
        "local time); empty = never on a schedule",
    )
    fine_tune_after_labels: int = Field(
        500, ge=0, description="also fine-tune as soon as this many labels arrived since the last fine-tune; 0 = off",
    )
    min_per_class: int = Field(
        100, ge=1, description="labels of each class (spam, ham) needed before a retrain runs (Stalwart uses 100)",
    )
    max_class_ratio: float = Field(
        10.0, ge=1.0, description="when one class has more than this many times the labels of the other, train on "
        "all of the smaller class and only the newest of the larger class, up to this ratio",
    )
    correction_weight: int = Field(
        10, ge=1, le=100, description="how many times a label of this mailbox counts against one base-corpus message "
        "when the token statistics are refitted (after a few hundred labels the mailbox outweighs the base corpus)",
    )
    calibration_fraction: float = Field(
        0.3, ge=0.0, lt=0.9, description="share of the trained-on labels (per class) that calibrate instead of train: "
        "with the base corpus's validation part they choose the combination weights and the spam threshold, so the "
        "threshold is set on this mailbox's mail as well as on the base corpus",
    )
    held_out_fraction: float = Field(
        0.2, ge=0.0, lt=0.9, description="newest share of the labels (by time) kept for the promotion gate, never "
        "trained on",
    )
    gate_fpr_margin: float = Field(
        0.0, ge=0.0, le=0.1, description="how much higher a candidate's false-positive rate may be than the live "
        "model's on the held-out set (absolute; 0 = never higher)",
    )
    gate_recall_margin: float = Field(
        0.01, ge=0.0, le=0.5, description="how much lower a candidate's spam recall may be than the live model's on "
        "the held-out set (absolute; 0.01 = one point, about one spam of the hundred in the default held-out set)",
    )
    base_corpus: str = Field(
        "", description="labelled mail every retrain starts from (a manifest folder/.tar.gz or ham/ + spam/ folders); "
        "empty = the bundled public corpus (its train split); 'none' = the mailbox's labels only",
    )
    base_corpus_max: int = Field(
        0, ge=0,
        description="at most this many base-corpus messages per retrain (a fixed stratified sample; 0 = all). "
        "A candidate that sees less than the live model saw tends to be rejected by the gate",
    )
    eval_corpus: str = Field(
        "", description="fixed evaluation corpus of the promotion gate; empty = the bundled public corpus's test split "
        "(never trained on); 'none' = the held-out labels only",
    )
    eval_corpus_max: int = Field(
        400, ge=0, description="at most this many evaluation-corpus messages (a fixed stratified sample; 0 = all)",
    )
    fine_tune_epochs: float = Field(1.0, gt=0, le=20, description="epochs of the scheduled fine-tune")
    fine_tune_max_messages: int = Field(
        800, ge=0, description="the transformer is fine-tuned on at most this many messages (a stratified sample; "
        "the token statistics see all); 0 = all",
    )
    fine_tune_max_length: int = Field(128, ge=16, le=512, description="tokens the fine-tuned transformer reads")
    threads: int = Field(1, ge=0, le=64, description="torch threads for retraining; 0 = all cores (the daemon keeps "
                         "classifying meanwhile)")
    housekeeping_seconds: float = Field(3600.0, gt=0, description="how often housekeeping runs (seconds)")
    raw_retention_days: int = Field(
        0, ge=0, description="drop the raw bytes of finished, unlabelled messages older than this many days "
        "(parsed fields, verdicts and labels stay); 0 = keep raw mail forever",
    )
    version_retention_days: int = Field(
        14, ge=1, description="delete the files (local and stored) of rejected and retired model versions older "
        "than this many days; their rows and metrics stay",
    )
    kb_sync_folders: list[str] = Field(
        default_factory=list, description="folders synced into the knowledge base by the housekeeping job "
        "(as `mailsense kb sync FOLDER`)",
    )

    @field_validator("fine_tune_cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        """Five fields of a crontab line; the scheduler parses the rest (APScheduler is not imported here:
        settings load before ``mailsense run`` can handle SIGTERM, and every import delays that)."""
        fields = value.split()
        if fields and (len(fields) != 5 or not all(CRON_FIELD.fullmatch(f) for f in fields)):
            raise ValueError(f"not a crontab line ({value!r}): five fields, minute hour day month weekday; "
                             "for example '0 3 * * *' = 03:00 every day")
        return " ".join(fields)
