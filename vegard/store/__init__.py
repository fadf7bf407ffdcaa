"""The run store: documents appended as they arrive, arrays in HDF5, a catalog of runs."""
