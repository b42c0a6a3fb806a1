"""Delivery of approved drafts as threaded replies (Drafts folder or SMTP), exactly once, and the outcome."""
