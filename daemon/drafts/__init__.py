"""Support drafts: who gets one, retrieval, generation backends, confidence."""
