"""The database side of review: the transition rules, the triggers and the ``review_queue`` view.

Reviewing happens in the database first (``UPDATE drafts SET status = 'approved' ...``); the
CLI, the web page and ``daemon.review.actions`` issue the same UPDATEs, so these triggers are
the one set of checks for everybody.

Transitions (anything else is refused with an error that names the allowed ones):

=============  ==========================================================================
from           to
=============  ==========================================================================
pending        needs_human (drafting stage only), approved, rejected, superseded
needs_human    pending (drafting stage only), approved (needs a text), rejected, superseded
approved       delivered, sent, rejected (approval withdrawn before delivery)
delivered      sent, superseded (nobody sent it and the conversation moved on)
rejected       — (final)
sent           — (final)
superseded     — (final)
=============  ==========================================================================

Who writes: the drafting stage marks its own writes with the transaction-local setting
``mailsense.writer = 'stage'`` (``SET LOCAL`` / ``set_config(..., true)``). Any other change of
``text`` is a person's edit: ``edited_by_human`` and ``edited_at`` are set, so a requeue never
overwrites it, and ``edit_similarity`` (0..1, word-level, like Python's ``difflib`` ratio)
compares the text with ``generated_text``, the machine's original. ``text`` can change only
while the draft awaits review (or in the UPDATE that approves it).

A decision (approved, rejected) stamps ``reviewed_at`` and ``reviewed_by``: the value the UPDATE
set, else the setting ``mailsense.reviewer``, else the database user.

Every insert and every status change sends ``NOTIFY mailsense_drafts`` with the payload
``{"id": <draft id>, "status": "<new status>", "previous": "<old status or null>", "message_id": <messages.id>}``.
"""

from __future__ import annotations

from daemon.drafts.tables import REWRITABLE, STAGE_WRITER, STATUSES, WRITER_SETTING

AWAITING_REVIEW = REWRITABLE

CHANNEL = "mailsense_drafts"
REVIEWER_SETTING = "mailsense.reviewer"

STATUS_CHECK = "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")"

# Allowed (from, to) pairs for a person; the drafting stage may also swap pending and needs_human.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "pending": ("approved", "rejected", "superseded"),
    "needs_human": ("approved", "rejected", "superseded"),
    "approved": ("delivered", "sent", "rejected"),
    "delivered": ("sent", "superseded"),
    "rejected": (),
    "sent": (),
    "superseded": (),
}


def _transitions_sql() -> str:
    """The TRANSITIONS table as a CASE over OLD.status giving the allowed targets as text[]."""
    arms = "\n".join(
        f"        WHEN '{src}' THEN ARRAY[{', '.join(repr(t) for t in targets)}]::text[]"
        for src, targets in TRANSITIONS.items()
    )
    return f"CASE OLD.status\n{arms}\n        ELSE ARRAY[]::text[] END"


SIMILARITY_FUNCTION = r"""
CREATE OR REPLACE FUNCTION mailsense_text_similarity(a text, b text) RETURNS double precision
LANGUAGE plpgsql IMMUTABLE AS $$
-- 2 * (longest common subsequence of words) / (words in a + words in b), like difflib's ratio
-- on word lists: 1.0 for the same text, 0.0 for nothing in common. Very long texts (over a
-- million word pairs) fall back to the share of shared words, to keep an UPDATE fast.
DECLARE
    wa text[] := regexp_split_to_array(btrim(coalesce(a, '')), '\s+');
    wb text[] := regexp_split_to_array(btrim(coalesce(b, '')), '\s+');
    n int; m int; i int; j int;
    prev int[]; cur int[];
BEGIN
    IF a IS NULL OR b IS NULL THEN RETURN NULL; END IF;
    IF btrim(a) = '' THEN wa := ARRAY[]::text[]; END IF;
    IF btrim(b) = '' THEN wb := ARRAY[]::text[]; END IF;
    n := coalesce(array_length(wa, 1), 0);
    m := coalesce(array_length(wb, 1), 0);
    IF n + m = 0 THEN RETURN 1.0; END IF;
    IF n = 0 OR m = 0 THEN RETURN 0.0; END IF;
    IF n::bigint * m > 1000000 THEN
        RETURN 2.0 * (SELECT count(*) FROM (SELECT unnest(wa) INTERSECT ALL SELECT unnest(wb)) s) / (n + m);
    END IF;
    prev := array_fill(0, ARRAY[m + 1]);
    FOR i IN 1..n LOOP
        cur := array_fill(0, ARRAY[m + 1]);
        FOR j IN 1..m LOOP
            IF wa[i] = wb[j] THEN
                cur[j + 1] := prev[j] + 1;
            ELSE
                cur[j + 1] := greatest(prev[j + 1], cur[j]);
            END IF;
        END LOOP;
        prev := cur;
    END LOOP;
    RETURN 2.0 * prev[m + 1] / (n + m);
END $$
"""

BEFORE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION mailsense_drafts_before() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    by_stage boolean := coalesce(current_setting('{WRITER_SETTING}', true), '') = '{STAGE_WRITER}';
    reviewer text := coalesce(nullif(current_setting('{REVIEWER_SETTING}', true), ''), current_user);
    allowed text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.generated_text IS NULL AND NOT coalesce(NEW.edited_by_human, false) THEN
            NEW.generated_text := NEW.text;
        END IF;
        RETURN NEW;
    END IF;

    NEW.updated_at := now();
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        allowed := {_transitions_sql()};
        IF by_stage AND OLD.status IN ('pending', 'needs_human') AND NEW.status IN ('pending', 'needs_human') THEN
            NULL;  -- a requeue redrafts: the new draft may be confident where the old was not
        ELSIF NOT NEW.status = ANY(allowed) THEN
            RAISE EXCEPTION 'draft %: cannot change status from % to %', OLD.id, OLD.status, NEW.status
                USING HINT = CASE WHEN cardinality(allowed) = 0 THEN OLD.status || ' is final'
                             ELSE 'from ' || OLD.status || ' a draft can become ' || array_to_string(allowed, ', ') END,
                      ERRCODE = 'check_violation';
        END IF;
        IF NEW.status = 'approved' AND coalesce(btrim(NEW.text), '') = '' THEN
            RAISE EXCEPTION 'draft %: cannot approve a draft without text', OLD.id
                USING HINT = 'write the reply in the same UPDATE: '
                             || 'UPDATE drafts SET text = ''...'', status = ''approved'' WHERE id = ' || OLD.id,
                      ERRCODE = 'check_violation';
        END IF;
        IF NEW.status IN ('approved', 'rejected') THEN
            NEW.reviewed_at := now();
            IF NEW.reviewed_by IS NOT DISTINCT FROM OLD.reviewed_by THEN
                NEW.reviewed_by := reviewer;
            END IF;
        END IF;
    END IF;

    IF NEW.text IS DISTINCT FROM OLD.text THEN
        IF by_stage THEN
            NEW.generated_text := NEW.text;
            NEW.edit_similarity := NULL;
        ELSE
            IF OLD.status NOT IN ('pending', 'needs_human') THEN
                RAISE EXCEPTION 'draft %: the text of a % draft cannot change', OLD.id, OLD.status
                    USING HINT = 'text can be edited while the draft is pending or needs_human',
                          ERRCODE = 'check_violation';
            END IF;
            NEW.edited_by_human := true;
            NEW.edited_at := now();
        END IF;
    END IF;
    IF NOT by_stage AND (NEW.text IS DISTINCT FROM OLD.text OR NEW.status IS DISTINCT FROM OLD.status) THEN
        NEW.edit_similarity := CASE
            WHEN NEW.generated_text IS NULL OR NEW.text IS NULL THEN NULL
            WHEN NEW.text = NEW.generated_text THEN 1.0
            ELSE mailsense_text_similarity(NEW.generated_text, NEW.text) END;
    END IF;
    RETURN NEW;
END $$
"""

AFTER_FUNCTION = f"""
CREATE OR REPLACE FUNCTION mailsense_drafts_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        PERFORM pg_notify('{CHANNEL}', json_build_object(
            'id', NEW.id, 'status', NEW.status,
            'previous', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
            'message_id', NEW.message_id)::text);
    END IF;
    RETURN NULL;
END $$
"""

REVIEW_QUEUE_VIEW = """
CREATE OR REPLACE VIEW review_queue AS
SELECT d.id AS draft_id,
       d.message_id,
       d.status,
       d.confidence,
       d.reason,
       coalesce(nullif(m.from_name, '') || ' <' || m.from_addr || '>', m.from_addr) AS sender,
       m.from_addr AS sender_address,
       m.subject,
       m.received_at,
       m.sent_at,
       a.name AS account,
       m.spam_verdict,
       m.spam_score,
       left(regexp_replace(coalesce(d.text, m.body_text, ''), '\\s+', ' ', 'g'), 160) AS preview,
       d.edited_by_human,
       jsonb_array_length(d.citations) AS sources,
       d.thread_key,
       d.created_at
FROM drafts d
JOIN messages m ON m.id = d.message_id
JOIN accounts a ON a.id = m.account_id
WHERE d.status IN ('pending', 'needs_human')
ORDER BY d.created_at, d.id
"""

UPGRADE: tuple[str, ...] = (
    SIMILARITY_FUNCTION,
    BEFORE_FUNCTION,
    AFTER_FUNCTION,
    "CREATE TRIGGER drafts_review_before BEFORE INSERT OR UPDATE ON drafts "
    "FOR EACH ROW EXECUTE FUNCTION mailsense_drafts_before()",
    "CREATE TRIGGER drafts_review_notify AFTER INSERT OR UPDATE ON drafts "
    "FOR EACH ROW EXECUTE FUNCTION mailsense_drafts_notify()",
    REVIEW_QUEUE_VIEW,
)

DOWNGRADE: tuple[str, ...] = (
    "DROP VIEW IF EXISTS review_queue",
    "DROP TRIGGER IF EXISTS drafts_review_notify ON drafts",
    "DROP TRIGGER IF EXISTS drafts_review_before ON drafts",
    "DROP FUNCTION IF EXISTS mailsense_drafts_notify()",
    "DROP FUNCTION IF EXISTS mailsense_drafts_before()",
    "DROP FUNCTION IF EXISTS mailsense_text_similarity(text, text)",
)
