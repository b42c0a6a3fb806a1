"""Learning from the mailbox: labels, corrections, scheduled retraining and the promotion gate."""
