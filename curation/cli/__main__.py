"""``python -m curation.cli``: the same as the ``cliptune`` command."""

import sys

from curation.cli.main import main

sys.exit(main())
