"""The one error type an operator can cause (bad config, bad input, missing model, over budget).

The CLI prints its message in one or two lines and exits non-zero, without a traceback.
"""


class GastownFTError(Exception):
    """An error the operator can fix: the message says what is wrong and what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n  hint: {self.hint}" if self.hint else base
