"""Mail in, exactly once: IMAP watchers, the SMTP/LMTP listener, file import, and the one row insert they share."""
