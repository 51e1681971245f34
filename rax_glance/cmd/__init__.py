"""Console scripts of the bundle, one module each."""

import os
import sys

EXIT_BROKEN_PIPE = 141  # what a shell reports for a process killed by SIGPIPE


def closed_pipe_exit():
    """The reader of our output went away (`... | head`): stop quietly, as Unix tools do.

    Pointing stdout at /dev/null keeps the interpreter's final flush from raising again.
    """
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_BROKEN_PIPE
