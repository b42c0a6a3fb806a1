"""How errors are worded for logs, for the database and for the person at the command line."""


class CommandError(Exception):
    """A problem the person can act on: ``mailsense`` prints it as one line and exits with ``exit_code``.

    The codes follow sysexits(3) so that systemd's ``RestartPreventExitStatus=`` can tell a
    problem a restart cannot fix (configuration, a database without working vector operations)
    from one it can (a database that is not reachable yet).
    """

    exit_code = 1


class DatabaseUnreachable(CommandError):
    """The database did not answer; it may later, so a supervisor may restart us."""

    exit_code = 75  # EX_TEMPFAIL


def describe_error(exc: BaseException) -> str:
    """Type and the first line of the message: never a traceback, a message body or a second line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:300]}"
