"""``python -m slate`` runs the command line."""

import sys

from slate.cli import main

sys.exit(main())
