"""The ``classify`` stage: the active spam model scores parsed messages."""
