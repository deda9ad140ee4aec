"""The handlers of the `shirushi` commands, grouped by concept; `shirushi.cli` parses the
arguments, calls one, and maps its errors to exit codes.

Each handler takes (settings, parsed arguments) and returns the exit code. Heavy modules
(the backend, cryptography, the servers) are imported inside the handlers, so that starting the
CLI stays quick and a responder-only install can run the commands it has.
"""
