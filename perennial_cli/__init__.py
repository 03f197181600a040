"""The ``perennial`` command line: a client of shared/ and of a running host. One module per command group."""
