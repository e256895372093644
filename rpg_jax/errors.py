"""Errors that mean "the user asked for something invalid": the CLI prints them without a traceback."""

import functools


class UserError(ValueError):
    """Bad input: an unknown name, an incompatible prior, an impossible budget, an unusable path."""


def unknown_name(kind: str, name: str, valid) -> UserError:
    return UserError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(valid))}")


def reading(what: str):
    """Decorates a reader whose first argument is a file's path: whatever a damaged or foreign file makes it raise
    becomes one UserError line naming the file ("{path}: cannot be read as {what} (ValueError: …)"). A reader
    parses bytes it does not control; its own refusals (UserError) pass through unchanged."""

    def decorate(reader):
        @functools.wraps(reader)
        def read(path, *args, **kwargs):
            try:
                return reader(path, *args, **kwargs)
            except UserError:
                raise
            except Exception as e:  # noqa: BLE001 (every failure of parsing foreign bytes is the file's)
                raise UserError(f"{path}: cannot be read as {what} ({detail(e)})") from None

        return read

    return decorate


def detail(error: Exception) -> str:
    """An exception as one short line, "ValueError: …": parsers' messages can run to many lines of internals."""
    return f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
