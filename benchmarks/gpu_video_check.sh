#!/usr/bin/env bash
# GPU check of the video engine (what CI's CPU cannot exercise): torchrun + NCCL training with fp16 autocast,
# GradScaler and gradient clipping (the paper recipe's settings) on the synthetic Something-Something V1 set,
# multi-view bf16 evaluation of the checkpoint, and the inference throughput of the published video models at
# their input sizes (batch 8, bf16 autocast vs fp32) side by side.
#
#   bash benchmarks/gpu_video_check.sh [OUT_DIR]        # needs torch with CUDA, timm, pillow; no MLflow
#   DATA=DIR bash benchmarks/gpu_video_check.sh         # a synthetic SSV1 set written elsewhere (no PyAV there)
set -euo pipefail
OUT=${1:-${OUT:-benchmarks/out/gpu}}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} UNIFORMER_NO_MLFLOW=1 PYTHONUNBUFFERED=1
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, torch.cuda.get_device_name())"
if [ -z "${DATA:-}" ]; then
  DATA=$(mktemp -d)/ssv1
  python3 -m uniformer.cli data synth ssv1 --out "$DATA" --classes 4 --train-per-class 24 --val-per-class 8 --frames 16 --size 64
fi
python3 -m torch.distributed.run --standalone --nproc_per_node 1 -m uniformer.cli train ssv1 --profile smoke \
  --data-root "$DATA" --out "$OUT/train" --no-progress amp=fp16 clip_grad=20 workers=4 epochs=12
python3 -m uniformer.cli eval ssv1 --checkpoint "$OUT/train/last.pth" --data-root "$DATA" --out "$OUT/eval" \
  --precision bf16 --no-progress
python3 - <<'EOF'
import time, torch, timm, uniformer  # noqa: F401
from uniformer.models.video_catalog import video_entries

dev = torch.device("cuda")
seen = set()
print(f"{'model':40} {'input':>14} {'fp32 clips/s':>13} {'bf16 clips/s':>13} {'ratio':>6}")
for e in video_entries("kinetics400"):
    key = (e.model, e.input_size)
    if key in seen:
        continue
    seen.add(key)
    m = timm.create_model(e.name, num_classes=e.num_classes).eval().to(dev)
    x = torch.randn(8, *e.input_size, device=dev)
    rates = []
    for dtype in (None, torch.bfloat16):
        with torch.inference_mode(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            for _ in range(3):
                m(x)
            torch.cuda.synchronize()
            t0, n = time.perf_counter(), 0
            while time.perf_counter() - t0 < 1.0:
                m(x)
                n += 1
            torch.cuda.synchronize()
            rates.append(8 * n / (time.perf_counter() - t0))
    print(f"{e.name:40} {'x'.join(map(str, e.input_size[1:])):>14} {rates[0]:13.1f} {rates[1]:13.1f} "
          f"{rates[1] / rates[0]:6.2f}")
    del m
    torch.cuda.empty_cache()
EOF
