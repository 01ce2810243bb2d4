#!/usr/bin/env bash
# The GPU checks (AMP, NCCL, throughput, resume), run on a CUDA machine from the repository root:
#   OUT=/tmp/gpu-out bash bench/gpu_check.sh            # everything, under 10 minutes on one H200 with 16 cores
#   ONLY=feed OUT=/tmp/gpu-out bash bench/gpu_check.sh  # issue 24's figures only (samples/s, MFU, syncs, DDP, workers)
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
feed() {  # issue 24: what keeps the GPU fed, at the flagship's settings (batch 128, resnet34, 64x64, bf16, CutMix, onecycle)
  local FLAG=(--epochs 3 --amp bf16 --batch-size 128)
  train feed-before "${FLAG[@]}" --data-on-device off --compile off   # the trainer as it was: loader workers, eager
  train feed-device "${FLAG[@]}" --data-on-device on --compile off    # the split on the device
  train feed-auto "${FLAG[@]}"                                        # the defaults: on the device, compiled (fallback: eager)
  echo "== samples/s, TFLOP/s and MFU per epoch (epoch 1 of a compiled run includes compiling)"
  for n in feed-before feed-device feed-auto; do
    grep -E "^epoch=" "$OUT/$n.log" | sed -E "s/.*val_weighted_recall=([0-9.]+).*samples_per_sec=([0-9.e+]+).*tflops=([0-9.e+-]+)( mfu=([0-9.e+-]+))?.*/$n recall=\1 samples_per_sec=\2 tflops=\3 mfu=\5/"
  done
  echo "== host syncs in 50 steps of the flagship's step (CUDA sync debug mode: each sync warns)"
  python3 - "$W/p/train" <<'PY' 2>&1 | tail -3
import sys, warnings, torch
sys.path.insert(0, "steps")
import train
from shards import DeviceBatches, ShardDataset
args = train.build_parser().parse_args(["--model", "resnet34", "--cutmix-prob", "0.5", "--amp", "bf16", "--scheduler", "onecycle"])
rt = train.setup_runtime(args)
data = ShardDataset(sys.argv[1])
heads, config = train.learned(args, data, rt)
parts = train.build_trainables(args, config, rt, 50)
parts.net = parts.model
sampler = torch.utils.data.DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=0)
loader = DeviceBatches(data, sampler, 128, True, rt.device)
gens = (torch.Generator(device=rt.device).manual_seed(0), torch.Generator().manual_seed(1))
class Fifty:
    sampler = loader.sampler
    def __iter__(self):
        for i, batch in zip(range(50), loader):
            yield batch
train.train_one_epoch(parts, Fifty(), heads, rt, args, gens)  # warm up (cuDNN autotuning, allocator)
torch.cuda.synchronize()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    torch.cuda.set_sync_debug_mode("warn")
    train.train_one_epoch(parts, Fifty(), heads, rt, args, gens)
    torch.cuda.set_sync_debug_mode(0)
syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
print(f"host syncs in 50 steps: {len(syncs)} (the epoch's one reduction expected)")
for w in syncs[:3]:
    print("  ", str(w.message)[:160])
PY
  echo "== DDP on one GPU: torchrun with one rank (NCCL) against the plain step"
  python3 -m torch.distributed.run --nnodes 1 --nproc_per_node 1 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:29562 \
    steps/train.py --train "$W/p/train" --validation "$W/p/validation" --model-dir "$W/m-ddp1" \
    --output-data-dir "$W/o-ddp1" --checkpoint-dir "$W/c-ddp1" "${COMMON[@]}" "${FLAG[@]}" >"$OUT/feed-ddp1.log" 2>&1
  grep -E "^epoch=" "$OUT/feed-ddp1.log" | sed -E "s/.*samples_per_sec=([0-9.e+]+).*/ddp-1-rank samples_per_sec=\1/"
  GPUS=$(nvidia-smi -L | wc -l)
  if [ "$GPUS" -gt 1 ]; then
    echo "== DDP from 1 to $GPUS ranks: samples/s per GPU"
    python3 -m torch.distributed.run --nnodes 1 --nproc_per_node "$GPUS" --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:29563 \
      steps/train.py --train "$W/p/train" --validation "$W/p/validation" --model-dir "$W/m-ddpn" \
      --output-data-dir "$W/o-ddpn" --checkpoint-dir "$W/c-ddpn" "${COMMON[@]}" "${FLAG[@]}" >"$OUT/feed-ddpn.log" 2>&1
    grep -E "^epoch=" "$OUT/feed-ddpn.log" | sed -E "s/.*samples_per_sec=([0-9.e+]+).*/ddp-$GPUS-ranks samples_per_sec=\1 (divide by $GPUS per GPU)/"
  fi
}
workers() {  # preprocessing on the machine's cores: N processes, each an instance with its share of the files
  local raw=$W/raw16
  python3 -c "from pathlib import Path; from tests.tools.datasets import write_bengali; write_bengali(Path('$raw'), n_images=$N, n_files=16, rows_per_group=1000)"
  local bytes; bytes=$(du -sb "$raw" | cut -f1)
  echo "== preprocessing: MB/s of parquet read, and peak RSS per worker"
  for n in ${WORKERS:-1 2 4 8 16}; do
    rm -rf "$W/wk" "$W/pw"; mkdir -p "$W/pw"
    local hosts; hosts=$(python3 -c "print(','.join(f'\"algo-{k}\"' for k in range(1, $n + 1)))")
    local t0; t0=$(date +%s.%N)
    for k in $(seq 1 "$n"); do
      mkdir -p "$W/wk/$k/opt/ml/processing" "$W/wk/$k/opt/ml/config"
      ln -s "$raw" "$W/wk/$k/opt/ml/processing/input"
      echo "{\"current_host\": \"algo-$k\", \"hosts\": [$hosts]}" > "$W/wk/$k/opt/ml/config/resourceconfig.json"
      OMP_NUM_THREADS=1 /usr/bin/time -f "%M" -o "$W/wk/$k.rss" python3 steps/preprocess.py --input "$W/wk/$k/opt/ml/processing/input" \
        --output "$W/pw" --size 64 64 --invert true --val-fraction 0.1 --label-columns grapheme_root,vowel_diacritic,consonant_diacritic \
        --num-classes grapheme_root=168,vowel_diacritic=11,consonant_diacritic=7 >"$W/wk/$k.log" 2>&1 &
    done
    wait
    local t1; t1=$(date +%s.%N)
    python3 -c "import statistics,glob; r=[int(open(p).read().split()[-1]) for p in glob.glob('$W/wk/*.rss')]; s=$t1-$t0; print(f'workers=$n: {$bytes/2**20/s:.0f} MB/s ({s:.1f} s), peak RSS per worker {statistics.median(r)/1024:.0f} MB median')"
  done
}
if [ "${ONLY:-}" = "feed" ]; then
  feed
  workers
  exit 0
fi
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

feed
workers
