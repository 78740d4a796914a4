"""Errors a user can act on. Each message names the file, line or setting and what to do.

The CLI turns any PsilmError into one line on stderr and exit code 2, with no traceback.
"""


class PsilmError(Exception):
    """Base class of every error meant for the user, not for a developer."""


class ConfigError(PsilmError):
    """A setting is missing, unknown or of the wrong type; the message names the key."""


class DataError(PsilmError):
    """An input file is missing or malformed; the message names the file and line."""


class BackendError(PsilmError):
    """A model could not be loaded or an endpoint could not be reached."""
