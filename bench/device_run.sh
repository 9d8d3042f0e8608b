#!/bin/bash
# Device check: ONNX Runtime's CUDA path + throughput (bench.bench_gpu), then a GPU fine-tune
# of the default model on fresh synthetic frames. Env: OUT, SMALL=1 for a local dry run.
# How onnxruntime-gpu reached the lent GPU machine (no network there; 64 MiB per transfer):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#       onnxruntime-gpu==1.31.1            # 256 MB; unpacked, tar | xz -9 (203 MB)
#   split -b 43000000 ort.tar.xz part.    # .ortc1/part.aa ... .ortc5/part.ae, one folder per call
#   pip download ... structlog watchdog starlette uvicorn click tifffile into .whl/
# The machine's image holds torch, numpy, OpenCV, pyarrow, scipy and the CUDA 13 / cuDNN 9 pip
# packages; the script links those (nvidia/) beside the unpacked onnxruntime, the layout of
# `pip install onnxruntime-gpu[cuda,cudnn]`. Figures: docs/models.md, "On a GPU".
set -u
T0=$(date +%s)
el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
PY=${PY:-python3}
NPROC=${NPROC:-16}; PER=${PER:-160}; STEPS=${STEPS:-300}; EPOCHS=${EPOCHS:-12}
TRAIN_S=${TRAIN_S:-220}; REPLAY=${REPLAY:-120}; SECS=${SECS:-2}; DEVICE=${DEVICE:-cuda}
if [ -z "${SMALL:-}" ]; then
  el "assemble onnxruntime-gpu"
  mkdir -p /tmp/ortparts /tmp/site
  for d in .ortc*; do [ -d "$d" ] && cp -n "$d"/part.* /tmp/ortparts/ 2>/dev/null; done
  ls -la /tmp/ortparts
  cat /tmp/ortparts/part.* > /tmp/ort.tar.xz
  sha256sum /tmp/ort.tar.xz
  $PY -c "import tarfile; tarfile.open('/tmp/ort.tar.xz').extractall('/tmp/site')" || el "EXTRACT FAILED"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || el "PIP FAILED"
  NVDIR=$($PY -c "import nvidia; print(list(nvidia.__path__)[0])" 2>/dev/null)
  el "nvidia packages: $NVDIR"; ls "$NVDIR" 2>/dev/null | tr '\n' ' '; echo
  [ -n "$NVDIR" ] && ln -sfn "$NVDIR" /tmp/site/nvidia
  export PYTHONPATH=/tmp/site:$PWD
  nvidia-smi -L
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
el "bench_gpu"
timeout 240 $PY -m bench.bench_gpu --json $OUT/gpu.json --replay-frames $REPLAY --seconds $SECS > $OUT/gpu.log 2>&1
el "bench_gpu rc=$?"; tail -c 3000 $OUT/gpu.log
nw() { $PY -c 'import sys; from nwwatch.cli import main; sys.exit(main())' "$@"; }
el "synth $NPROC x $PER"
W=/tmp/gtrain; rm -rf $W; mkdir -p $W/DATA/labels
for i in $(seq 0 $((NPROC-1))); do
  s=$((700+i)); nw synth insitu $W/s$s --frames $PER --size 512 --seed $s > /dev/null 2>&1 &
done
wait
for i in $(seq 0 $((NPROC-1))); do s=$((700+i))
  for f in $W/s$s/*.tif; do b=$(basename $f .tif); ln -s $f $W/DATA/s${s}_$b.tif; ln -s $W/s$s/labels/$b.png $W/DATA/labels/s${s}_$b.png; done
done
el "frames: $(ls $W/DATA/*.tif | wc -l)"
el "train"
timeout $TRAIN_S $PY -c 'import sys; from nwwatch.cli import main; sys.exit(main())' train $W/DATA --init insitu-default \
  --paradigm supervised --optimizer adamw --lr 0.001 --crop 384 --batch-size 16 \
  --steps-per-epoch $STEPS --epochs $EPOCHS --val-fraction 0.02 --device $DEVICE --seed 0 \
  --out $W/cand.onnx > $OUT/train.log 2>&1
rc=$?; el "train rc=$rc"; grep -a epoch $OUT/train.log | tail -15
if [ ! -f $W/cand.onnx ] && [ -f $W/cand.pt ]; then
  el "export-only"
  nw train --resume --export-only --out $W/cand.onnx >> $OUT/train.log 2>&1; el "export rc=$?"
fi
cp $W/cand.onnx $OUT/ 2>/dev/null
$PY -c "from training.weights import write_slim_weights; write_slim_weights('$W/cand.pt', '$OUT/cand_slim.pt', 'GPU fine-tune of insitu-default')" && el "slim ok"
ls -la $OUT
el done
