"""Spam: the text the model sees, training, batch classification and Junk filing."""
