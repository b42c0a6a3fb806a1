"""IMAP for every part that talks to a mailbox: opening a connection, FETCH parsing, mailbox operations."""
