"""User-facing errors.

Anything the user can fix (a bad file, a bad config value, a missing package) raises
:class:`UnlearnError` with a message that names the problem and the fix. The CLI prints the
message on one line and exits with code 2; it never shows a traceback for these.
"""

from __future__ import annotations


class UnlearnError(ValueError):
    """A problem with the user's input, config or environment, with a fix in the message."""
