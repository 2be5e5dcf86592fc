"""CI regression gate: the latest smoke results against a committed baseline.

Accuracy is compared directly (same synthetic data, same seed). Throughput is compared machine-independently:
each entry's fp32 img/s is normalised by the fp32 GEMM rate measured in the same run (the fraction of the
machine's matrix-multiply rate the model achieves), so a slower CI machine does not read as a regression.
"""
import math
from typing import Dict, List, Tuple

from .report import load_results


def snapshot(results: Dict) -> Dict:
    """What the gate tracks: accuracy per evaluated entry and efficiency (fraction of GEMM rate) per entry."""
    return {
        "top1": {k: v["top1"] for k, v in sorted(results["eval"].items())},
        "efficiency": {k: r["fp32_gemm_frac"] for k, r in sorted(results["profile"].items())
                       if r.get("fp32_gemm_frac")},
    }


def compare(current: Dict, baseline: Dict, tol: Dict) -> Tuple[bool, List[List[str]]]:
    """(passed, table rows). Fails when top-1 drops by more than ``top1_drop`` points on any entry, or the
    geometric mean of the efficiency ratios drops by more than ``efficiency_drop`` (a fraction)."""
    rows, ok = [], True
    for entry, base in baseline["top1"].items():
        cur = current["top1"].get(entry)
        bad = cur is None or cur < base - tol["top1_drop"]
        ok &= not bad
        rows.append(["top-1", entry, f"{base:.2f}", "missing" if cur is None else f"{cur:.2f}",
                     "–" if cur is None else f"{cur - base:+.2f}", f"≥ {base - tol['top1_drop']:.2f}",
                     "FAIL" if bad else "ok"])
    common = [k for k in baseline["efficiency"] if k in current["efficiency"]]
    if common:
        ratio = math.exp(sum(math.log(current["efficiency"][k] / baseline["efficiency"][k]) for k in common)
                         / len(common))
        bad = ratio < 1 - tol["efficiency_drop"]
        ok &= not bad
        rows.append(["throughput / GEMM rate", f"geo-mean of {len(common)} entries", "1.00", f"{ratio:.2f}",
                     f"{100 * (ratio - 1):+.0f}%", f"≥ {1 - tol['efficiency_drop']:.2f}", "FAIL" if bad else "ok"])
    elif baseline["efficiency"]:
        ok = False
        rows.append(["throughput / GEMM rate", "no profiled entries", "", "missing", "", "", "FAIL"])
    return ok, rows


def format_table(rows: List[List[str]]) -> str:
    head = ["check", "what", "baseline", "current", "Δ", "needs", "result"]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def current_snapshot(spec, profile: str, root) -> Dict:
    return snapshot(load_results(spec, profile, root))
