"""`python -m sar_compressor`: the command-line tool."""

import sys

from .engine.cli import main

sys.exit(main())
