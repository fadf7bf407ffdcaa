"""Instrument kinds: profile settings, device builder and simulator of each driver."""
