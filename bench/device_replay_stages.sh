#!/bin/bash
# Where does replay spend its time on a GPU? Replay of 120 frames timed per stage (read,
# normalise, network calls with their shapes, measurement) with the default providers, with
# providers cuda, cpu and with cpu alone. Env: OUT; SMALL=1 for a local dry run.
# How onnxruntime-gpu reached the lent GPU machine (no network there; 64 MiB per transfer):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#       onnxruntime-gpu==1.31.1            # 256 MB; unpacked, tar | xz -9 (203 MB)
#   split -b 43000000 ort.tar.xz part.    # .ortc1/part.aa ... .ortc5/part.ae, one folder per call
#   pip download ... structlog watchdog starlette uvicorn click tifffile into .whl/
# The machine's image holds torch, numpy, OpenCV, pyarrow, scipy and the CUDA 13 / cuDNN 9 pip
# packages; the script links those (nvidia/) beside the unpacked onnxruntime, the layout of
# `pip install onnxruntime-gpu[cuda,cudnn]`. Figures: docs/models.md, "On a GPU".
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
PY=${PY:-python3}; PER=${PER:-30}
if [ -z "${SMALL:-}" ]; then
  mkdir -p /tmp/ortparts /tmp/site
  for d in .ortc*; do [ -d "$d" ] && cp -n "$d"/part.* /tmp/ortparts/ 2>/dev/null; done
  cat /tmp/ortparts/part.* > /tmp/ort.tar.xz; sha256sum /tmp/ort.tar.xz
  $PY -c "import tarfile; tarfile.open('/tmp/ort.tar.xz').extractall('/tmp/site')" || el "EXTRACT FAILED"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || el "PIP FAILED"
  ln -sfn "$($PY -c 'import nvidia; print(list(nvidia.__path__)[0])')" /tmp/site/nvidia
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
W=/tmp/gprof; rm -rf $W; mkdir -p $W/frames
nw() { $PY -c 'import sys; from nwwatch.cli import main; sys.exit(main())' "$@"; }
for s in 302 303 304 305; do nw synth insitu $W/s$s --frames $PER --size 512 --seed $s >/dev/null 2>&1 & done; wait
for s in 302 303 304 305; do for f in $W/s$s/*.tif; do cp $f $W/frames/s${s}_$(basename $f); done; done
el "frames $(ls $W/frames | wc -l)"
printf '[[watch]]\npath = "%s"\n[output]\nresults = "%s"\n[inference]\nproviders = ["cuda", "cpu"]\n' $W/frames $W/r_cudaonly > $W/cudaonly.toml
printf '[[watch]]\npath = "%s"\n[output]\nresults = "%s"\n[inference]\nproviders = ["cpu"]\n' $W/frames $W/r_cpu > $W/cpu.toml
run() { name=$1; shift
  el "replay $name"
  $PY -c "
import sys, time, threading, collections, json
import nwwatch.service.frames as fr
from nwwatch.segment import session
tot = collections.defaultdict(float); n = collections.Counter(); lock = threading.Lock(); calls = []
def timed(owner, attr, key):
    f = getattr(owner, attr)
    def w(*a, **k):
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            with lock:
                dt = time.perf_counter() - t; tot[key] += dt; n[key] += 1
                if key == 'segment_native': calls.append([list(a[1].shape), round(dt * 1000, 1)])
    setattr(owner, attr, w)
for a in ('read_frames', 'normalize_image', 'measure_contact_angle', 'frame_confidence'):
    timed(fr, a, a)
timed(session.Segmenter, '__init__', 'session_init')
timed(session.Segmenter, 'segment', 'segment')
timed(session.Segmenter, 'segment_native', 'segment_native')
timed(session.Segmenter, '_run_bound', 'run_bound')
from nwwatch.cli import main
t = time.perf_counter()
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
wall = time.perf_counter() - t
rep = {'wall_s': round(wall, 2), **{k: [round(v, 3), n[k]] for k, v in tot.items()}, 'native_calls': calls[:60]}
print(json.dumps(rep)); open('$OUT/stages_$name.json', 'w').write(json.dumps(rep))
" replay $W/frames --out $W/r_$name "$@" 2>&1 | grep -v -i tensorrt | tail -4
}
run gpu
run gpu_again
run cudaonly --config $W/cudaonly.toml
run cpu --config $W/cpu.toml
el done
