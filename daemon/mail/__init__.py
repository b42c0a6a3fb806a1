"""Mail as bytes and text: the MIME parser and the readers of mbox files, Maildirs and .eml files."""
