"""The ``file`` stage: a spam verdict carried out in the mailbox (Junk, keywords), exactly once."""
