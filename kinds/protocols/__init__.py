"""Protocol kinds: file model, roles, checks, plan, analyses and summary of each."""
