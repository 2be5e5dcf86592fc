"""`uniformer profile loader`: data-loader throughput per worker count, on a tiny synthetic set."""
import json

from uniformer.cli import main
from uniformer.data.synth_imagenet import write_synthetic_imagenet


def test_profile_loader_reports_throughput(tmp_path):
    write_synthetic_imagenet(tmp_path / "d", classes=3, train_per_class=8, val_per_class=2, size=48, seed=0)
    out = tmp_path / "loader.json"
    rc = main(["profile", "loader", "--data-root", str(tmp_path / "d"), "--workers", "0", "--img-size", "32",
               "--batch-sizes", "1", "4", "--json", str(out), "--no-mlflow"])
    assert rc == 0
    (r,) = json.loads(out.read_text())["loader"]
    assert r["num_workers"] == 0 and r["batch_size"] == 4 and r["img_per_s"] > 0 and r["skipped_samples"] == 0
