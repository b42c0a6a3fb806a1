"""Learning from the mailbox: labels, corrections, the day-one bootstrap and ``mailsense learn``."""
