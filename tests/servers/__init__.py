"""Whole servers: every model over real sockets, in-process or as a child process."""
