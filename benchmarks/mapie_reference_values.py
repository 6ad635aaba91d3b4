"""MAPIE's Hoeffding-Bentkus p-values on fixed cases: the reference table of tests/test_stats_references.py.

    pip install mapie==1.6.0
    python benchmarks/mapie_reference_values.py [--json-out F]

MAPIE is not a dependency of cascadekit; this script is run by hand and its output pasted into
``MAPIE_HB`` in tests/test_stats_references.py. Each case is ``(n, k, alpha)``: ``k`` is the sum of
n losses in [0, 1] (fractional for cost-normalised losses). MAPIE takes the empirical risk
``r_hat = k / n`` and evaluates the Bentkus term at ``ceil(n * r_hat)`` in floating point, so where
``n * (k / n)`` rounds above the integer k (e.g. ``100 * (7 / 100) = 7.000000000000001``) it
rounds up to k + 1 and its p-value is larger than the exact formula's. ``float_n_r_hat`` records
``n * (k / n)`` so those cases are visible in the output.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import mapie
import numpy as np
from mapie.risk_control.methods import compute_hoeffding_bentkus_p_value

#: (n, k, alpha): n = 1, k = 0 and k = n, r_hat exactly alpha, r_hat above alpha, fractional k, large n,
#: and (100, 7), (25, 7), (50, 14), whose n * (k / n) exceeds k in float64.
CASES: list[tuple[int, float, float]] = [
    (1, 0, 0.1),
    (1, 1, 0.1),
    (1, 0, 0.5),
    (10, 0, 0.1),
    (10, 1, 0.1),
    (10, 1, 0.3),
    (10, 2.5, 0.3),
    (10, 10, 0.9),
    (30, 3, 0.1),
    (30, 3, 0.2),
    (30, 4.2, 0.3),
    (50, 5, 0.2),
    (100, 10, 0.1),
    (100, 20, 0.1),
    (100, 50, 0.5),
    (100, 7, 0.1),
    (100, 7, 0.2),
    (100, 7, 0.3),
    (25, 7, 0.5),
    (50, 14, 0.5),
    (200, 10, 0.1),
    (300, 45, 0.15),
    (300, 12.75, 0.1),
    (1000, 80, 0.1),
    (2000, 150, 0.1),
]


def run() -> dict[str, Any]:
    rows = []
    for n, k, alpha in CASES:
        p = compute_hoeffding_bentkus_p_value(np.array([k / n]), n, alpha)
        rows.append(
            {
                "n": n,
                "k": k,
                "alpha": alpha,
                "p": float(p[0, 0]),
                "float_n_r_hat": n * (k / n),
                "float_ceil_differs": math.ceil(n * (k / n)) != math.ceil(k),
            }
        )
    return {"mapie_version": mapie.__version__, "function": "compute_hoeffding_bentkus_p_value", "cases": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    text = json.dumps(run(), indent=1)
    if args.json_out is not None:
        args.json_out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
