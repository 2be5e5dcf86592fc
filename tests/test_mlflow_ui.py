"""The MLflow UI lists a table's runs: headless Chromium opens it on 127.0.0.1 and reads the rendered page."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Skipped on a developer's machine without Chromium; under CI (CI=true, .ci/run installs it) a missing one fails.
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true",
                                                  reason="Chromium not installed (apt-get install chromium)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_ui_lists_runs(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("UNIFORMER_NO_MLFLOW", raising=False)
    from uniformer.tracking import start_run

    assert CHROMIUM, "Chromium is required under CI (apt-get install chromium)"
    for stage, model in (("train", "uniformer_xxs"), ("eval", "uniformer_xxs.in1k_224")):
        tags = {"mode": "train", "dataset": "imagenet", "dataset_manifest": "d1g3st", "data_source": "synthetic"}
        with start_run("imagenet", stage, model, "smoke", {"epochs": 1}, tags) as run:
            run.log_metrics({"top1": 42.0})
    port = _free_port()
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "mlflow"), "ui", "--backend-store-uri",
                               uri, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):  # the server takes a few seconds to come up
            try:
                urllib.request.urlopen(base + "/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow ui did not start")
        from mlflow.tracking import MlflowClient

        exp = MlflowClient(uri).get_experiment_by_name("imagenet")
        exp_id = exp.experiment_id
        assert exp.tags.get("mlflow.experimentKind") == "custom_model_development"  # opens on its runs, not GenAI
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=20000", "--dump-dom",
             f"{base}/#/experiments/{exp_id}/runs"], capture_output=True, text=True, timeout=120).stdout
        assert "train/uniformer_xxs/smoke" in dom and "eval/uniformer_xxs.in1k_224/smoke" in dom
        assert "d1g3st" in dom  # the runs view's Dataset column: the data set's content hash
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
