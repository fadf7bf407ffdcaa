"""Pure numpy/scipy analysis, and thin bluesky callbacks applying it to documents."""
