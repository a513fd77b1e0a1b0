#!/usr/bin/env bash
# The main job, from nothing: install the dependencies (Debian packages), build,
# prepare Fashion-MNIST (Debian's dataset-fashion-mnist) as HDF5, train the tiny
# recipe on 2 MPI ranks and evaluate it (zero-shot accuracy, retrieval R@1/5/10).
#   sudo bash jobs/local/quickstart.sh            (RANKS=4 for more ranks)
set -euo pipefail
cd "$(dirname "$0")/../.."
t0=$(date +%s)
bash jobs/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"
t_build=$(date +%s)

ranks=${RANKS:-2}
data=data/fashion-mnist
if [ ! -f "$data/train.h5" ]; then
  build/curaclip prep fashion-mnist --out "$data"
fi
run=runs/tiny-$(date +%Y%m%d-%H%M%S)
bash jobs/local/mpirun.sh "$ranks" build/curaclip train --config configs/tiny.ini \
  --data.train "$data/train.h5" --data.eval "$data/test.h5" --train.out "$run"
bash jobs/local/mpirun.sh "$ranks" build/curaclip eval --checkpoint "$run" --data "$data/test.h5" \
  --json "$run/eval.json"
/usr/bin/python3 bench/plot_metrics.py "$run" || echo "(plot skipped)"
t_end=$(date +%s)
echo "install + build: $((t_build - t0)) s; prepare + train + evaluate: $((t_end - t_build)) s; run folder: $run"
