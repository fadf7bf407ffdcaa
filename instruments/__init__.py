"""Drivers (wire protocols over pyvisa / pyserial) and the ophyd-async devices built on them.

Nothing here knows whether the other end of the wire is a simulator.
"""
