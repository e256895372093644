"""Errors that mean "the user asked for something invalid": the CLI prints them without a traceback."""


class UserError(ValueError):
    """Bad input: an unknown name, an incompatible prior, an impossible budget, an unusable path."""


def unknown_name(kind: str, name: str, valid) -> UserError:
    return UserError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(valid))}")
