"""The kinds vegard ships: one module per instrument kind and per protocol kind.

Each exports `KIND` and is registered once, as an entry point in pyproject.toml
(`vegard.instrument_kinds`, `vegard.protocol_kinds`); see `vegard.registry`.
"""
