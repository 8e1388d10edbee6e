"""``python -m ganaug`` (and ``torchrun ... -m ganaug train``) runs the command line."""

import sys

from .cli import main

sys.exit(main())
