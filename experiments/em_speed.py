"""EM speed study: runs ``benchmarks/em_speed.py`` (JAX EM vs NumPy and scikit-learn, same init).

    python experiments/em_speed.py [--full]      # writes runs/em_speed/results.json

Its flags are the benchmark's (``--help``).
"""

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "em_speed.py"), run_name="__main__")
