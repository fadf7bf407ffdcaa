"""vegard: instrument control and data acquisition for nanoscale electrochemistry."""
