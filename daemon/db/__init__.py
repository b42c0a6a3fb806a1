"""Everything durable: models, sessions, the embedded server and the work-queue SQL."""
