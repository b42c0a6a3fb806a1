"""Generator backends: ``extractive`` (offline default), ``openai`` (any compatible endpoint), ``local``.

Each backend turns a ``DraftRequest`` (the cleaned question and numbered public sources)
into the answer part of a reply, or abstains. Greeting, closing, confidence and the
internal-text guard are the composer's job (``daemon.drafts.compose``), the same for all.
"""
