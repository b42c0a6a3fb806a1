"""Mailsense: a self-hosted mail daemon (IMAP in, spam filing, grounded support drafts)."""

__version__ = "0.1.0"
