"""Profiles and protocols: pydantic models and their loaders."""
