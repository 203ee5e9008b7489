"""The core imports no pipeline, and the design card's public names stay importable."""

import subprocess
import sys

PIPELINE_MODULES = ("mechind.train", "mechind.data", "mechind.models", "mechind.losses", "mechind.criteria",
                    "mechind.graph", "cg", "mechsparse")


def test_core_imports_no_pipeline():
    code = ("import sys\n"
            "from mechind.core import derivatives, runner, metrics, nets, rng, report\n"
            f"print([m for m in {PIPELINE_MODULES!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_names_are_the_core_modules():
    import mechind
    import mechind.derivatives
    import mechind.metrics
    from mechind import core, rng
    from mechind.core import derivatives, metrics

    assert mechind.derivatives is derivatives and mechind.metrics is metrics and rng is core.rng
    assert callable(mechind.derivatives.jacobian) and callable(mechind.metrics.mcc)
