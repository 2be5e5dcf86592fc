"""The profile report: one row per published entry, published vs measured, speed and efficiency.

Pure functions of the measured results (no timing here), so the table code is unit-tested on
fabricated results. Published numbers come only from the entry's paper_results.csv row.

What differs between kinds of input is asked of the task (``uniformer.tasks``): which published GFLOPs
column one forward pass is compared with (``gflops_column``), whether params are published
(``params_published``), the row's input fields and further FLOPs checks (``profile_row_fields``,
``profile_totals``, ``profile_row_extra``) and the cells describing them (``profile_cells``). Video, for
example, is compared per view (one clip, one crop: what one forward pass costs) and in total over the test
views, since the README publishes the total.
"""
import csv
import io
from typing import Dict, List, Optional, Sequence, Tuple

GFLOPS_WRONG = "published figure wrong (see note {n})"


def _num(text) -> Optional[float]:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def delta_pct(measured: Optional[float], published: Optional[float]) -> Optional[float]:
    if measured is None or not published:
        return None
    return 100.0 * (measured - published) / published


def verdict(params_delta: Optional[float], gflops_delta: Optional[float], notes: str, tol_pct: float,
            note_number: Optional[int] = None, total_delta: Optional[float] = None,
            params_published: bool = True) -> Tuple[str, bool]:
    """(verdict, whether the row's note is cited) for the published params / GFLOPs of one entry.

    ``ok`` when all are within ``tol_pct``; a GFLOPs disagreement that the row's own note explains
    (it mentions FLOPs, e.g. UniFormer-L, issue #75) is ``published figure wrong (see note n)``;
    anything else is reported as an unexplained mismatch. ``total_delta`` (video): our GFLOPs per view x
    views against the published total, a separate check because the published per-view figure is derived
    from the total. ``params_published=False``: a missing published param count is expected.
    """
    problems, cite = [], False
    if gflops_delta is None or (params_delta is None and params_published):
        problems.append("no published figure")
    for what, delta in (("GFLOPs", gflops_delta), ("total GFLOPs", total_delta)):
        if delta is None or abs(delta) <= tol_pct:
            continue
        if "flops" in (notes or "").lower() and note_number is not None:
            text, cite = GFLOPS_WRONG.format(n=note_number), True
        else:
            text = f"{what} mismatch (unexplained)"
        if text not in problems:
            problems.append(text)
    if params_delta is not None and abs(params_delta) > tol_pct:
        problems.append("params mismatch (unexplained)")
    return ("; ".join(problems) or "ok"), cite


def _speed_columns(precision: str, t: Optional[Dict], gmacs: float, gemm_rate: Optional[float]) -> Dict[str, object]:
    """Flat columns for one precision from a ``profile_inference`` result (+ status / mode / train)."""
    p = precision
    cols = {f"{p}_status": "not run", f"{p}_mode": None, f"{p}_latency_batch": None, f"{p}_latency_ms": None,
            f"{p}_batch": None, f"{p}_img_s": None, f"{p}_gflops_s": None, f"{p}_gemm_frac": None,
            f"{p}_peak_mem_mb": None, f"{p}_repeats": None}
    if not t:
        return cols
    cols[f"{p}_status"] = t.get("status", "ok") + (f": {t['reason']}" if t.get("reason") else "")
    cols[f"{p}_mode"] = t.get("mode")
    if "latency" not in t:
        return cols
    lat = t["latency"]
    cols[f"{p}_latency_batch"] = lat["batch_size"]
    cols[f"{p}_latency_ms"] = lat["ms"]
    best = max(t["throughput"], key=lambda r: r["img_per_s"]) if t["throughput"] else lat
    cols[f"{p}_batch"] = best["batch_size"]
    cols[f"{p}_img_s"] = best["img_per_s"]
    cols[f"{p}_peak_mem_mb"] = best.get("peak_mem_mb")
    cols[f"{p}_repeats"] = len(best["times"])
    rate = 2.0 * gmacs * best["img_per_s"]  # model FLOP = 2 x multiply-adds
    cols[f"{p}_gflops_s"] = rate
    cols[f"{p}_gemm_frac"] = rate / gemm_rate if gemm_rate else None
    if t.get("train"):
        cols[f"{p}_train_batch"] = t["train"]["batch_size"]
        cols[f"{p}_train_img_s"] = t["train"]["img_per_s"]
    return cols


def build_rows(task, results: Sequence[Dict], precisions: Sequence[str], gemm: Dict[str, Dict],
               tol_pct: float) -> Tuple[List[Dict[str, object]], List[str]]:
    """Flat report rows of ``task``'s results and the numbered notes they cite.

    Each result: ``entry`` (name), ``label``, ``model``, ``tag``, the task's ``profile_fields`` (images:
    ``img_size``; video: ``task``, ``input_size`` (3, T, H, W), ``views``), ``row`` (the paper_results.csv
    dict), ``params`` (count), ``gmacs`` (fvcore multiply-adds of one forward pass, G),
    ``timing[precision]`` (``profile_inference`` output plus ``status``/``reason``/``mode``, or absent) and
    ``timing_shared_with`` (the entry whose measurement it reuses) where that applies. The task adds its
    fields to a row: what the input is, further FLOPs checks (video: per view x views against the published
    total) and the sharing.
    """
    rows, notes = [], []
    for r in results:
        row_pub = r["row"]
        pub_p = _num(row_pub.get("params_m"))
        pub_f = _num(row_pub.get(task.gflops_column))
        params_m = r["params"] / 1e6
        dp, df = delta_pct(params_m, pub_p), delta_pct(r["gmacs"], pub_f)
        total, total_delta = task.profile_totals(r)
        note = task.errata.get(r["entry"]) or (row_pub.get("notes") or "").strip()
        n = notes.index(note) + 1 if note in notes else len(notes) + 1
        text, cite = verdict(dp, df, note, tol_pct, n, total_delta, task.params_published)
        if cite and note not in notes:
            notes.append(note)
        row = {"entry": r["entry"], "label": r["label"], "model": r["model"], "tag": r["tag"],
               **task.profile_row_fields(r)}
        row.update({"params_m_published": pub_p, "params_m": params_m, "params_delta_pct": dp,
                    "gflops_published": pub_f, "gflops": r["gmacs"], "gflops_delta_pct": df, **total,
                    "verdict": text, "note": n if cite else None, "top1_published": _num(row_pub.get("top1")),
                    **task.profile_row_extra(r)})
        for p in precisions:
            row.update(_speed_columns(p, r.get("timing", {}).get(p), r["gmacs"],
                                      (gemm.get(p) or {}).get("gflops_per_s")))
        rows.append(row)
    return rows, notes


def render_csv(rows: Sequence[Dict[str, object]]) -> str:
    cols: List[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _f(v, fmt="{:.3g}", none="–"):
    return none if v is None else fmt.format(v)


def _pct(v):
    return "–" if v is None else f"{v:+.1f}%"


def gflops_cell(r: Dict, key: str) -> str:
    """``published / ours / Δ`` of the row's ``key`` GFLOPs (``<key>_published``, ``<key>_delta_pct``)."""
    return f"{_f(r[f'{key}_published'], '{:g}')} / {r[key]:.2f} / {_pct(r[f'{key}_delta_pct'])}"


def params_cell(r: Dict) -> str:
    return f"{_f(r['params_m_published'], '{:g}')} / {r['params_m']:.2f} / {_pct(r['params_delta_pct'])}"


def _lead_cells(task, r: Dict, i: int) -> Dict[str, str]:
    """Column header -> cell for everything before the speed columns (the task's cells between the entry and
    the verdict)."""
    return {"#": str(i), "Entry": f"{r['label']} (`{r['entry']}`)", **task.profile_cells(r),
            "Verdict": r["verdict"]}


def _speed_cells(r: Dict, p: str) -> List[str]:
    status = r[f"{p}_status"]
    if r[f"{p}_img_s"] is None:
        word = status.split(":")[0]
        return [word, "–", "–"]
    mark = "*" if status.startswith("truncated") else ""
    frac = r[f"{p}_gemm_frac"]
    return [f"{r[f'{p}_img_s']:.3g} (b{r[f'{p}_batch']}){mark}",
            f"{r[f'{p}_latency_ms']:.4g}",
            f"{r[f'{p}_gflops_s']:.3g} ({'–' if frac is None else f'{100 * frac:.0f}%'})"]


def render_markdown(task, rows: Sequence[Dict[str, object]], notes: Sequence[str], precisions: Sequence[str],
                    header: Dict[str, str], title: str, legend: Sequence[str] = ()) -> str:
    """The report: title, a key/value header (machine, GEMM rates, settings), the table, legend and notes.

    The task's cells describe the input and its FLOPs checks (``profile_cells``); speeds are in its
    ``profile_rate`` (img/s, clips/s).
    """
    out = [f"# {title}", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in header.items()]
    cols = list(_lead_cells(task, rows[0], 1)) if rows else ["#", "Entry", "Res", "Params M (pub / ours / Δ)",
                                                             "GFLOPs (pub / ours / Δ)", "Verdict"]
    rate = task.profile_rate
    for p in precisions:
        cols += [f"{p} {rate} (batch)", f"{p} latency ms", f"{p} GFLOP/s (% GEMM)"]
    has_train = any(f"{p}_train_img_s" in r for r in rows for p in precisions)
    if has_train:
        cols += [f"{p} train {rate} (batch)" for p in precisions]
    out += ["", "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for i, r in enumerate(rows, 1):
        cells = list(_lead_cells(task, r, i).values())
        for p in precisions:
            cells += _speed_cells(r, p)
        if has_train:
            cells += [f"{_f(r.get(f'{p}_train_img_s'))} (b{r.get(f'{p}_train_batch') or '–'})" for p in precisions]
        out.append("| " + " | ".join(cells) + " |")
    if legend:
        out += [""] + [f"- {line}" for line in legend]
    if notes:
        out += ["", "Notes (the entry's `notes` in paper_results.csv, or its task's errata):", ""]
        out += [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(out) + "\n"
