"""Training and evaluating spam models; the daemon's stages only load what this produces."""
