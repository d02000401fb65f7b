"""User-facing errors: one line naming the field, the bad value and what is allowed.

Every package raises `UserError` for a user's mistake (bad scenario, bad flag, bad file); the CLI
prints it as a single line and exits with status 2. Pydantic validation errors are turned into the
same one-line form by `format_validation_error`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class UserError(Exception):
    """A mistake in the user's input: `field` = `value` is not allowed; `allowed` says what is."""

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field} = {_show(value)}: {allowed}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in a sweep's worker process (a bad trace file, a bad seed), it comes back pickled; the
        # default rebuilds an exception from its message alone, which this __init__ cannot take, and the
        # process pool then reports itself broken instead of the user's mistake.
        return type(self), (self.field, self.value, self.allowed)


@contextlib.contextmanager
def about(field: str, *, instead_of: str) -> Iterator[None]:
    """Inside, a UserError about `instead_of` is about `field`: a helper that names its own argument
    (a scenario loader says `scenario`) reports the argument the caller took it from (`base`)."""
    try:
        yield
    except UserError as exc:
        if exc.field != instead_of or isinstance(exc, InvalidScenario):
            raise
        raise UserError(field, exc.value, exc.allowed) from None


def printable(text: str) -> str:
    """`text` with every control or non-printable character escaped (a newline as \\n, an escape as
    \\x1b): whatever a file held, an error stays one line and never steers the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class InvalidScenario(UserError):
    """A scenario that fails validation; the message is already `path = value: reason`."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), self.args


def _show(value: Any) -> str:
    """The value as the user gave it: a long one is cut to 80 characters, except a file path, which is
    what the user must find and fix (a cut one is useless)."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()  # a numpy scalar as the number it is (its repr is np.int64(99) in numpy 2)
    text = repr(str(value) if isinstance(value, PurePath) else value)
    if len(text) <= 80 or (isinstance(value, str | PurePath) and os.sep in str(value)):
        return text
    return text[:77] + "..."


def format_validation_error(
    error: ValidationError, prefix: str = "", allowed_fields: dict[str, list[str]] | None = None
) -> str:
    """Every pydantic error as `path = value: message`, joined by "; " on one line."""
    return "; ".join(_format_one(e, prefix, allowed_fields) for e in error.errors(include_url=False))


def _format_one(error: Any, prefix: str, allowed_fields: dict[str, list[str]] | None) -> str:
    path = printable(".".join(str(part) for part in error["loc"]))
    path = f"{prefix}.{path}" if prefix and path else (prefix or path or "<root>")
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        names = (allowed_fields or {}).get(parent)
        message = "unknown field" + (f"; allowed: {', '.join(names)}" if names else "")
    elif error["type"] == "missing":
        return f"{path}: required field is missing"
    elif error["type"] == "finite_number":
        message = "must be a finite number"
    elif error["type"] == "literal_error":
        expected = str(error.get("ctx", {}).get("expected", ""))
        message = "allowed: " + expected.replace("'", "").replace(" or ", ", ")
    if isinstance(error.get("input"), dict):
        # A check across fields (model validator): its message names the fields itself.
        return _lower_first(message) if path == "<root>" else f"{path}: {_lower_first(message)}"
    return f"{path} = {_show(error.get('input'))}: {_lower_first(message)}"


def _lower_first(text: str) -> str:
    text = text.removeprefix("Value error, ")
    return text[:1].lower() + text[1:]
