"""Physics models and instrument emulators that speak the instruments' wire protocols.

No bluesky or ophyd imports here: a simulator is a server, not a device.
"""
