"""Errors meant for people: what was wrong, where, and how to fix it."""


class BoneSegError(ValueError):
    """Bad input or configuration, reported to the user as one clear message.

    Entry points catch it, print the message and exit with status 2. The message names the file,
    array or config key concerned and says how to fix the problem.
    """


def positive_int(value: object, key: str, minimum: int = 1) -> int:
    """``value`` as an int, or a :class:`BoneSegError` naming ``key`` unless it is an integer
    (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BoneSegError(f"{key}={value!r}: must be an integer >= {minimum}")
    return int(value)
