"""Floor 9, the command line: click options in, one library call, messages out."""
