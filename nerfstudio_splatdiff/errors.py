"""User-facing errors: one clear sentence that says what went wrong and what to do."""


class SplatdiffError(ValueError):
    """An error the user caused (bad input, missing file, ...), with a message that says what to do."""
