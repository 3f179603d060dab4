"""Plumbing for the scanner; nothing here is public API."""
