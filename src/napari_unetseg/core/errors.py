"""Errors that mean "the user gave us something we cannot use".

The engine does not know which front it runs under, so its messages never name a
command-line flag or a dock control. An error carries the options it concerns instead,
as *keys* (mostly config field names: ``"patch_size"``, ``"steps"``; and the run's own:
``"out"``, ``"resume"``, ``"init"``, ``"overwrite"``, ``"axes"``), and each front words
them its own way with :meth:`UserInputError.worded`:

>>> error = UserInputError("patch size 128 is larger than the image (64x64)",
...                        ("use a patch size of 64 or less", "patch_size"))
>>> str(error)
'patch size 128 is larger than the image (64x64): use a patch size of 64 or less'
>>> error.worded({"patch_size": "--patch-size"})
'patch size 128 is larger than the image (64x64): use a patch size of 64 or less (--patch-size)'
>>> error.worded({})  # a front without that option leaves its fix out
'patch size 128 is larger than the image (64x64)'
"""

from __future__ import annotations

from collections.abc import Mapping

Fix = str | tuple[str, str]


class UserInputError(ValueError):
    """Bad input from the user: a problem, and the fixes that would solve it.

    The CLI prints it as one line and exits with code 2; the GUI shows it as a
    notification. Anything else that escapes is a bug.

    Parameters
    ----------
    problem
        What is wrong, in plain words (no flag or control names).
    *fixes
        What the user can do: a plain string (shown by every front), or ``(text,
        option)``: shown with the front's name of ``option``, and only by fronts that
        have that option.
    subject
        The option the problem is about, named first: ``UserInputError("must be a
        number >= 1, got 0", subject="steps")`` reads "steps must be ..." in plain
        text, "--steps must be ..." in the CLI, "'Steps' must be ..." in the Train dock.
    """

    def __init__(self, problem: str, *fixes: Fix, subject: str | None = None) -> None:
        self.problem = problem
        self.fixes = tuple((fix, None) if isinstance(fix, str) else (fix[0], fix[1]) for fix in fixes)
        self.subject = subject
        super().__init__(self.worded())

    @property
    def options(self) -> tuple[str, ...]:
        """The options this error concerns: its subject, then those of its fixes."""
        named = [self.subject] + [option for _, option in self.fixes]
        return tuple(dict.fromkeys(option for option in named if option is not None))

    def worded(self, names: Mapping[str, str] | None = None) -> str:
        """The message for a front that calls its options ``names`` (option -> name).

        ``None``: plain text, options left unnamed. A fix whose option is not in ``names``
        is left out (that front has no such option); the subject keeps its key then.
        """
        head = self.problem
        if self.subject is not None:
            head = f"{(names or {}).get(self.subject, self.subject)} {head}"
        parts = []
        for text, option in self.fixes:
            if option is None or names is None:
                parts.append(text)
            elif option in names:
                parts.append(f"{text} ({names[option]})")
        return f"{head}: {_join(parts)}" if parts else head


def _join(parts: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} or {parts[-1]}"
