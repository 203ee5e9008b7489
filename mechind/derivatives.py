"""``mechind.derivatives`` is :mod:`mechind.core.derivatives` (the shared core); kept importable."""

import sys

from mechind.core import derivatives as _core_module

sys.modules[__name__] = _core_module
