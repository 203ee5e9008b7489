"""``mechind.rng`` is :mod:`mechind.core.rng` (the shared core); kept importable."""

import sys

from mechind.core import rng as _core_module

sys.modules[__name__] = _core_module
