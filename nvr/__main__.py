"""``python -m nvr ...`` (and ``torchrun --nproc_per_node N -m nvr mine ...``): the ``nvr`` command."""

import sys

from .cli import main

sys.exit(main())
