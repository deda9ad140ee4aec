"""`python -m shirushi` runs the command line."""

from shirushi.cli import main

raise SystemExit(main())
