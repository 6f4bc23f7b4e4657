"""The errors a user can meet, each a message that names the file or flag, the problem and what to do.

Every user-facing error of the package is a :class:`CranialkitError` (a ``ValueError``, so ``except ValueError``
still catches it). ``cranialkit`` commands print one line ``error: <file or --flag>: <problem>; <what to do>`` for
it and exit with :attr:`CranialkitError.exit_code` (2 for a bad command line, 1 for everything else); ``--debug``
or ``CRANIALKIT_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations


class CranialkitError(ValueError):
    """A problem with the user's input or environment; the message says which file or flag and what to do."""

    exit_code = 1


class UsageError(CranialkitError):
    """A command-line argument that cannot be used (wrong number, unknown choice, contradictory flags)."""

    exit_code = 2


class CheckpointError(CranialkitError):
    """A checkpoint file that is missing, unreadable, unsafe or of another kind than the one needed."""


class OutputMismatchError(CranialkitError):
    """An output folder made from other inputs or settings than the ones given now (resuming would mix results)."""


class VolumeFileError(CranialkitError):
    """A volume file that cannot be used: the message names the file and the problem."""


class GeometryError(VolumeFileError):
    """Volumes of one case that do not share a grid or overlap where they must not, or implausible spacing."""
