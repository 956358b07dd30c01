"""Workflows: what an entry point does, composed from the rooms (fit, test-fold evaluation)."""
