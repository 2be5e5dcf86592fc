"""The smoke rows prove what they claim: each video table's CI item, run exactly as the workflow runs it
(``uniformer.workflow.commands``: data synth -> data check -> train -> eval, the same command lines as
Snakemake / DVC, through the real CLI in a scratch folder), scores clearly above chance.

"Clearly": the one-sided binomial test against guessing, p = P[X >= correct] with X ~ Binomial(n_val,
1 / classes), must be below 0.01 -- a model that learned nothing passes one time in a hundred at most.
The CI item of a table is the first ``train`` entry of ``tables.<table>.smoke`` (what .ci/smoke-matrix.yaml
keeps): Kinetics-400 (appearance + motion classes) and Something-Something V2 (classes that differ only in
the direction / order of motion, see ``uniformer.data.synth_video``).

CI (``.ci/run``) deselects these (marker ``gated``): its smoke pipeline trains the same items with the same command
lines and ``make gate`` holds them to the same chance bound (alpha 0.01) and to the baseline's binomial bound, so
the claim is checked once per CI run, not twice. ``make test`` runs them.
"""
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uniformer.config import load_params
from uniformer.workflow import commands

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
P_MAX = 0.01
TIMEOUT = 1200


def binomial_p(correct: int, n: int, chance: float) -> float:
    """One-sided p = P[X >= correct], X ~ Binomial(n, chance)."""
    return sum(math.comb(n, k) * chance ** k * (1 - chance) ** (n - k) for k in range(correct, n + 1))


def test_binomial_p():
    assert binomial_p(0, 20, 0.2) == pytest.approx(1.0)
    assert binomial_p(10, 20, 0.2) == pytest.approx(0.00259, abs=1e-5)  # scipy.stats.binomtest(10, 20, .2, 'greater')
    assert binomial_p(10, 20, 0.5) == pytest.approx(0.5881, abs=1e-4)


def _run(argv, cwd, env):
    """One workflow command line (``uniformer ...``) through ``python -m uniformer.cli``."""
    assert argv[0] == "uniformer", argv
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "uniformer.cli", *argv[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, (f"{' '.join(argv)} -> rc {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
                                  f"\n--- stderr\n{proc.stderr[-6000:]}")
    return time.perf_counter() - t0


@pytest.mark.gated
@pytest.mark.parametrize("table", ["kinetics", "something"])
def test_ci_smoke_item_learns(table, tmp_path):
    params = load_params(ROOT / "params.yaml")
    item = params["tables"][table]["smoke"]["train"][0]
    train = commands("train", table, "smoke", params)[item]
    dataset = train[0][train[0].index("train") + 1]
    steps = commands("data", table, "smoke", params)[dataset] + train + commands("eval", table, "smoke", params)[item]
    env = dict(os.environ, UNIFORMER_PARAMS=str(ROOT / "params.yaml"), UNIFORMER_NO_MLFLOW="1",
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    env.pop("UNIFORMER_PROFILE", None)
    seconds = {" ".join(argv[:3]): _run(argv, tmp_path, env) for argv in steps}

    eval_cmd = steps[-1]
    m = json.loads((tmp_path / eval_cmd[eval_cmd.index("--out") + 1] / "metrics.json").read_text())
    n, classes = int(m["samples"]), int(m["num_classes"])
    correct = round(m["top1"] * n / 100)
    chance = 1.0 / classes
    p = binomial_p(correct, n, chance)
    # the smallest number correct that would pass, to state the margin
    needed = next(k for k in range(n + 1) if binomial_p(k, n, chance) < P_MAX)
    msg = (f"{table}/{item}: top-1 {m['top1']:.1f}% = {correct}/{n} over {classes} classes (chance "
           f"{100 * chance:.1f}%), one-sided binomial p = {p:.2e} (need < {P_MAX}: >= {needed}/{n} correct; margin "
           f"{correct - needed:+d} clips); seconds {seconds}")
    print(msg)
    assert m["skipped_samples"] == 0, msg
    assert p < P_MAX, msg
