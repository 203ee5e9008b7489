"""``mechind.metrics`` is :mod:`mechind.core.metrics` (the shared core); kept importable."""

import sys

from mechind.core import metrics as _core_module

sys.modules[__name__] = _core_module
