"""The scheduler of ``mailsense run``: retraining, housekeeping and KB sync on the times in ``[learning]``."""
