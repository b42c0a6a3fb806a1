"""Prometheus metrics, one registry per process, served on /metrics by daemon.health."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

MESSAGES_STORED = Counter(
    "mailsense_messages_stored_total", "Messages committed by ingestion", ["account", "source", "result"],
    registry=REGISTRY,
)
STAGE_OUTCOMES = Counter(
    "mailsense_stage_outcomes_total", "Per-message results of pipeline stages", ["stage", "outcome"],
    registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    "mailsense_stage_batch_seconds", "Time to process one batch", ["stage"], registry=REGISTRY,
)
IMAP_CONNECTED = Gauge(
    "mailsense_imap_connected", "1 while the folder watcher holds a logged-in connection", ["account", "folder"],
    registry=REGISTRY,
)
IMAP_ERRORS = Counter(
    "mailsense_imap_errors_total", "Connection or protocol failures of folder watchers", ["account", "kind"],
    registry=REGISTRY,
)
DRAFT_OUTCOMES = Gauge(
    "mailsense_draft_outcomes", "Drafts by what the person did with the reply (read from Sent)", ["outcome"],
    registry=REGISTRY,
)
DRAFT_DELIVERIES = Gauge(
    "mailsense_draft_deliveries", "Approved drafts by delivery state (in_drafts, sent_by_smtp, waiting, held)",
    ["state"], registry=REGISTRY,
)
DRAFT_REVIEWS = Gauge(
    "mailsense_draft_reviews", "Drafts a person decided on, by outcome (approved_unchanged, approved_edited, "
    "rejected)", ["outcome"], registry=REGISTRY,
)
DRAFTS_AWAITING_REVIEW = Gauge(
    "mailsense_drafts_awaiting_review", "Drafts pending or needing a human", registry=REGISTRY,
)
DRAFT_ACCEPTANCE = Gauge(
    "mailsense_draft_acceptance_ratio", "Approved drafts (with or without edits) per decided draft; 0 before any",
    registry=REGISTRY,
)
