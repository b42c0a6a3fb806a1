"""Learning from the mailbox: labels, corrections, the day-one bootstrap, ``mailsense learn``, scheduled
retraining and the promotion gate."""
