"""The ``parse`` stage: raw bytes to the fields later stages read."""
