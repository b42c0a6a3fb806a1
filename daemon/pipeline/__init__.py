"""The pipeline's machinery: the stage protocol and names, routing between stages, and the workers."""
