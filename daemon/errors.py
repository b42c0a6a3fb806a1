"""How errors are worded for logs and for the database."""


def describe_error(exc: BaseException) -> str:
    """Type and the first line of the message: never a traceback, a message body or a second line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:300]}"
