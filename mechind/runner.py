"""``mechind.runner`` is :mod:`mechind.core.runner` (the shared core); kept importable."""

import sys

from mechind.core import runner as _core_module

sys.modules[__name__] = _core_module
