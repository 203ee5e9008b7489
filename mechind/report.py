"""``mechind.report`` is :mod:`mechind.core.report` (the shared core); kept importable."""

import sys

from mechind.core import report as _core_module

sys.modules[__name__] = _core_module
