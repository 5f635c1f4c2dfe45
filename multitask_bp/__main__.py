"""``python -m multitask_bp``: the command line."""

import sys

from multitask_bp.cli import main

sys.exit(main())
