"""Errors that mean "the user gave us something we cannot use"."""


class UserInputError(ValueError):
    """Bad input from the user: the message names the problem and the fix.

    The CLI prints it as one line and exits with code 2; the GUI shows it as a
    notification. Anything else that escapes is a bug.
    """
