"""The spam model: the text it sees, its parts (transformer, token statistics, senders), its versions."""
