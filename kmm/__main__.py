"""``python3 -m kmm ...`` is the ``kmm`` command (works before a shell finds the script)."""
import sys

from kmm.suite.cli import main

sys.exit(main())
