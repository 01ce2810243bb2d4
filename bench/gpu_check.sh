#!/usr/bin/env bash
# The GPU checks (AMP, NCCL, throughput, resume), run on a CUDA machine from the repository root:
#   OUT=/tmp/gpu-out bash bench/gpu_check.sh
# The synthetic Bengali layout (137x236 wide parquet, three heads) is written, preprocessed to 64x64 as
# config/bengali.yaml does, then train.py trains the flagship's resnet34 with each precision; one log
# per run lands in $OUT. Needs python3 with torch, torchvision, numpy, pyarrow and Pillow (no SDK).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
N=${N:-20000}
W=${W:-/tmp/gpu-work}
mkdir -p "$OUT"
rm -rf "$W" && mkdir -p "$W"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch,torchvision,pyarrow;print('torch',torch.__version__,'torchvision',torchvision.__version__,'pyarrow',pyarrow.__version__,'nccl',torch.cuda.nccl.version(),'cpus',__import__('os').cpu_count())"

python3 -c "import time; from pathlib import Path; from tests.tools.datasets import write_bengali; t=time.time(); write_bengali(Path('$W/raw'), n_images=$N, n_files=4, rows_per_group=5000); print('data: $N images in', round(time.time()-t, 1), 's')"
/usr/bin/time -f "preprocess: %e s, %M KB peak RSS" python3 steps/preprocess.py --input "$W/raw" --output "$W/p" \
  --size 64 64 --invert true --val-fraction 0.1 --test-fraction 0.1 \
  --label-columns grapheme_root,vowel_diacritic,consonant_diacritic \
  --num-classes grapheme_root=168,vowel_diacritic=11,consonant_diacritic=7 2>&1 | tail -2

COMMON=(--model resnet34 --batch-size 128 --head-weights 2,1,1 --cutmix-prob 0.5 --scheduler onecycle --num-workers 4)
train() {  # NAME ARGS...: one training run, its log in $OUT/NAME.log, its epoch lines shown
  local name=$1; shift
  python3 steps/train.py --train "$W/p/train" --validation "$W/p/validation" --model-dir "$W/m-$name" \
    --output-data-dir "$W/o-$name" --checkpoint-dir "$W/c-$name" "${COMMON[@]}" "$@" >"$OUT/$name.log" 2>&1
  echo "== $name (exit $?)"; grep -E "^train: |samples_per_sec|error|Error|resumed|ignored" "$OUT/$name.log" | cut -c1-400
}
if [ "${ONLY:-}" = "throughput" ]; then  # the loader-worker choice: auto (the default) against 4, and a larger batch
  COMMON=(--model resnet34 --head-weights 2,1,1 --cutmix-prob 0.5 --scheduler onecycle)
  train auto --epochs 3 --amp bf16 --batch-size 128
  train workers4 --epochs 3 --amp bf16 --batch-size 128 --num-workers 4
  train auto-b512 --epochs 3 --amp bf16 --batch-size 512
  exit 0
fi
train bf16 --epochs 3 --amp bf16
train fp16 --epochs 3 --amp fp16
train fp32 --epochs 3 --amp off --channels-last off
train bf16-compile --epochs 3 --amp bf16 --compile true
# spot-style resume: a 4-epoch run killed (SIGKILL) once epoch 2 is logged, then run again
( train resume --epochs 4 --amp bf16 ) &
for _ in $(seq 600); do grep -q "^epoch=2 " "$OUT/resume.log" 2>/dev/null && break; sleep 0.2; done
pkill -9 -f "model-dir $W/m-resume"; wait
cp "$OUT/resume.log" "$OUT/resume-killed.log"
train resume --epochs 4 --amp bf16
echo "== evaluate the bf16 model on the test split"
python3 steps/evaluate.py --model "$W/m-bf16" --data "$W/p/test" --output "$W/e" 2>&1 | tail -2

echo "== NCCL: one rank (one GPU): process group, all_reduce, DDP step"
python3 - <<'EOF' 2>&1 | tail -5
import os, time, torch, torch.distributed as dist, torchvision
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29561", RANK="0", WORLD_SIZE="1")
dist.init_process_group("nccl")
t = torch.ones(1 << 26, device="cuda")  # 256 MB
torch.cuda.synchronize(); t0 = time.time()
for _ in range(10):
    dist.all_reduce(t)
torch.cuda.synchronize()
print("nccl all_reduce 256 MB x10:", round((time.time() - t0) * 100, 2), "ms each; value", t[0].item())
model = torch.nn.parallel.DistributedDataParallel(torchvision.models.resnet34(num_classes=186).cuda(), device_ids=[0])
x = torch.randn(128, 3, 64, 64, device="cuda")
with torch.autocast("cuda", dtype=torch.bfloat16):
    loss = model(x).float().logsumexp(1).mean()
loss.backward()
print("DDP(nccl) bf16 step ok, loss", round(loss.item(), 4), "grad norm", round(sum(p.grad.norm()**2 for p in model.parameters()).sqrt().item(), 4))
dist.destroy_process_group()
EOF
