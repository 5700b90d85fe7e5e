"""Sub-commands of the exmail-relay command line, one module each."""
