"""``python -m cascadekit.cli``: the ``cascadekit`` command."""

from __future__ import annotations

import sys

from cascadekit.cli import main

sys.exit(main())
