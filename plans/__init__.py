"""Bluesky plans: they talk to devices only through bluesky messages."""
