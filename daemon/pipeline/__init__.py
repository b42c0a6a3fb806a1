"""The processing pipeline: an ordered list of stages run by workers that share one database."""
