"""``uniformer models``: every registered variant with its params, GFLOPs and published input size."""
import argparse
import json

import timm

from ..models.catalog import imagenet_entries
from ..profiling.flops import count_flops, count_params


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-flops", action="store_true", help="skip the (slower) fvcore FLOP count")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    rows, built = [], {}
    for e in imagenet_entries():
        if e.model not in built:
            built[e.model] = timm.create_model(e.model, img_size=e.img_size)
        model = built[e.model]
        row = dict(model=e.name, label=e.label, resolution=e.img_size, params_m=round(count_params(model) / 1e6, 3),
                   published_params_m=e.row["params_m"], published_gflops=e.row["gflops"],
                   published_top1=e.row["top1"])
        if not args.no_flops:
            row["gflops"] = round(count_flops(model, (3, e.img_size, e.img_size))["gflops"], 3)
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    cols = ["model", "resolution", "params_m", "published_params_m"] + ([] if args.no_flops else ["gflops"]) + [
        "published_gflops", "published_top1"]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))
    return 0
