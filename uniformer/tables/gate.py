"""CI regression gate: the latest results against a committed baseline, with checks that can fail.

Accuracy: each baseline entry must be evaluated on the same number of samples with none skipped, and its count
of correct samples may not fall below the ``alpha`` quantile of Binomial(n, baseline accuracy) (a one-sided
binomial bound: a real drop fails, sampling noise of a re-run does not), nor below what a chance-level model
reaches with probability ``alpha`` (so a row at chance can never pass).
Throughput: each entry's fp32 img/s as a fraction of the fp32 GEMM rate measured in the same run. That fraction
still moves with the CPU (measured: AMD EPYC baseline vs a 2-core Intel CI runner, -1% to -38% per entry, median
-14%), so the run's machine shift is divided out first: every entry with its own timing is checked against its own
baseline times the median shift of the other entries (a timing shared by several entries counted once), the
median shift of all
may not fall by more than ``machine_drop`` (a slowdown of most entries), and a baseline entry that is missing,
skipped or failed fails with its name.
mIoU / AP (dense tables): no binomial model, so each entry may not fall more than ``metric_drop`` points below its
baseline, nor below ``floor`` (the smoke quality bar of its issue: mIoU 50, keypoint AP 30, box and mask AP50 30;
a model that has learnt nothing scores about 0), with the same sample-count and skipped-sample checks.
Staleness: a result file whose recorded code or parameters differ from the checkout's fails (``provenance``).
"""
import statistics
from typing import Dict, List, Optional, Sequence, Tuple

from .report import load_results

Row = List[str]


def snapshot(results: Dict, metrics: Sequence[str] = ("top1",)) -> Dict:
    """What the gate tracks: per evaluated entry its ``metrics`` (the table's ``gate_metrics``; keyed
    ``"<entry> <metric>"`` when there are several), sample count and skipped samples (and, for top-1, the class
    count: its bound is binomial); per profiled entry with its own fp32 timing, the fraction of the GEMM rate
    (None when not measured)."""
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    accuracy = {}
    for k, v in sorted(results["eval"].items()):
        common = {"samples": int(v["samples"]), "skipped_samples": int(v.get("skipped_samples", 0))}
        for metric in metrics:
            key = k if len(metrics) == 1 else f"{k} {metric}"
            if metric == "top1":
                accuracy[key] = {"top1": v["top1"], "classes": int(v.get("classes_in_val") or v["num_classes"]),
                                 **common}
            else:  # mIoU, AP: no binomial model; held to the baseline minus ``metric_drop`` and the ``floor``
                accuracy[key] = {"metric": metric, "value": v.get(metric), **common}
    efficiency = {k: r.get("fp32_gemm_frac") for k, r in sorted(results["profile"].items())
                  if not r.get("timing_shared_with")}
    return {"accuracy": accuracy, "efficiency": efficiency}


def min_correct(samples: int, baseline_top1: float, classes: int, alpha: float) -> Tuple[int, int, int]:
    """``(needed, binomial bound, chance bound)`` in correct samples: the baseline's ``alpha`` quantile, and the
    count a chance-level model (accuracy 1/classes) reaches with probability at most ``alpha``."""
    from scipy.stats import binom  # here, not at module level: scipy.stats adds ~1 s to every `uniformer` command

    bound = int(binom.ppf(alpha, samples, min(max(baseline_top1 / 100.0, 0.0), 1.0)))
    chance = int(binom.isf(alpha, samples, 1.0 / classes)) + 1  # P[X >= chance] <= alpha under chance
    return max(bound, chance), bound, chance


def _accuracy_rows(current: Dict, baseline: Dict, tol: Dict) -> Tuple[bool, List[Row]]:
    rows, ok = [], True
    for entry, base in baseline["accuracy"].items():
        cur = current["accuracy"].get(entry)
        n = base["samples"]
        if "classes" in base:  # top-1: a count of correct samples
            k = base["classes"]
            need, _, chance = min_correct(n, base["top1"], k, float(tol["alpha"]))
            needs = f"≥ {100 * need / n:.2f} (chance bound {100 * chance / n:.2f}, n={n}, {k} classes)"
            name, base_value = "top-1", base["top1"]
            value = cur and cur.get("top1")
            below = cur is not None and round(cur["top1"] * cur["samples"] / 100.0) < need
        else:  # mIoU / AP: the baseline minus metric_drop points, never below the smoke quality floor
            drop, floor = float(tol["metric_drop"]), float(tol["floor"])
            need = max(base["value"] - drop, floor)
            needs = f"≥ {need:.2f} (baseline - {drop:g}, floor {floor:g}, n={n})"
            name, base_value = base["metric"], base["value"]
            value = cur and cur.get("value")
            below = cur is not None and (value is None or value < need)
        if cur is None:
            problems, got = ["missing"], "missing"
        else:
            problems = [msg for bad, msg in (
                (cur["samples"] != n, f"{cur['samples']} samples, baseline {n}"),
                (cur["skipped_samples"], f"{cur['skipped_samples']} skipped samples"),
                (cur["samples"] == n and below, "below the bound")) if bad]
            got = "–" if value is None else f"{value:.2f}"
        ok &= not problems
        rows.append([name, entry, f"{base_value:.2f}", got, needs, "FAIL: " + "; ".join(problems)
                     if problems else "ok"])
    return ok, rows


def efficiency_ratios(current: Dict, baseline: Dict) -> Dict[str, float]:
    """current / baseline GEMM-rate fraction of each entry measured in both."""
    return {entry: cur / base for entry, base in baseline["efficiency"].items()
            if base and isinstance(cur := current["efficiency"].get(entry), (int, float))}


def _efficiency_rows(current: Dict, baseline: Dict, drop: float, machine_drop: float) -> Tuple[bool, List[Row]]:
    """Each entry against its own baseline times the machine shift of the *other* entries (median of their
    ratios, so the entry cannot excuse itself; ``drop``), and the median shift of all (``machine_drop``: a
    slowdown of every entry, or of most of them, moves it). The fraction of the GEMM rate still depends on the
    CPU (small models are dispatch-bound; AVX-512 speeds GEMMs more than depthwise convs), by a similar factor
    for every entry."""
    rows, ok = [], True
    ratios = efficiency_ratios(current, baseline)
    for entry, base in baseline["efficiency"].items():
        if base is None:
            continue  # not measured when the baseline was made: nothing to hold it to
        others = [r for e, r in ratios.items() if e != entry]
        shift = statistics.median(others) if others else 1.0
        cur = current["efficiency"].get(entry, "missing")
        need = base * shift * (1 - drop)
        if cur in ("missing", None):
            bad, got = True, "missing" if cur == "missing" else "skipped / failed"
        else:
            bad, got = cur < need, f"{cur:.3f} ({100 * (cur / base - 1):+.0f}%)"
        ok &= not bad
        rows.append(["throughput / GEMM rate", entry, f"{base:.3f}", got,
                     f"≥ {need:.3f} (x {shift:.2f} others' shift x {1 - drop:.2f})", "FAIL" if bad else "ok"])
    if ratios:
        shift = statistics.median(ratios.values())
        bad = shift < 1 - machine_drop
        ok &= not bad
        rows.append(["throughput / GEMM rate", f"median shift of {len(ratios)} entries", "1.00", f"{shift:.2f}",
                     f"≥ {1 - machine_drop:.2f}", "FAIL" if bad else "ok"])
    return ok, rows


def compare(current: Dict, baseline: Dict, tol: Dict, stale: Optional[Dict[str, str]] = None
            ) -> Tuple[bool, List[Row]]:
    """(passed, table rows). ``tol``: ``alpha`` (top-1 bound) or ``metric_drop`` and ``floor`` (mIoU / AP
    bound: points), ``efficiency_drop`` (per entry, after the
    machine shift) and ``machine_drop`` (the median shift), both fractions;
    ``stale``: {result file: why} of results the checkout would not have written."""
    ok_a, rows_a = _accuracy_rows(current, baseline, tol)
    ok_e, rows_e = _efficiency_rows(current, baseline, float(tol["efficiency_drop"]),
                                    float(tol["machine_drop"]))
    rows_s = [["stale result", path, "", "", "this checkout's code and params", f"FAIL: {why}"]
              for path, why in sorted((stale or {}).items())]
    return ok_a and ok_e and not rows_s, rows_a + rows_e + rows_s


def format_table(rows: List[Row]) -> str:
    head = ["check", "what", "baseline", "current", "needs", "result"]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def current_snapshot(spec, profile: str, root) -> Dict:
    return snapshot(load_results(spec, profile, root), spec.gate_metrics or (spec.result_key,))
