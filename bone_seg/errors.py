"""Errors meant for people: what was wrong, where, and how to fix it."""


class BoneSegError(ValueError):
    """Bad input or configuration, reported to the user as one clear message.

    Entry points catch it, print the message and exit with status 2. The message names the file,
    array or config key concerned and says how to fix the problem.
    """
