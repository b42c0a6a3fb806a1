"""Mail in, exactly once: IMAP watchers, the SMTP/LMTP listener, MIME parsing and the row insert."""
