"""``python -m rddm`` runs the ``rddm`` command."""

import sys

from .cli import main

sys.exit(main())
