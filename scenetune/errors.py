"""Errors a user can cause: the CLI prints them as one sentence and exits with code 2."""


class UserError(Exception):
    """Bad input (a path, a dataset layout, an argument) detected before any work starts."""
