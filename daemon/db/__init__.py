"""Everything durable: core tables, sessions, the embedded server, migrations and the work-queue SQL."""
