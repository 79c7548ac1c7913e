"""The one exception type the command line turns into a clear message and exit code 1."""


class TestbedError(Exception):
    """Something the operator can fix: the message says what is wrong, where, and how to fix it."""

    __test__ = False  # not a pytest test class, despite the name
