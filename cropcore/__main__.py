"""`python -m cropcore` runs the command-line interface."""

import sys

from cropcore.cli import main

sys.exit(main())
