#!/usr/bin/env bash
# The main job, from nothing: install the dependencies (Debian packages), build, and
# train CLIP with JEST data curation on Fashion-MNIST (Debian's dataset-fashion-mnist)
# on 2 MPI ranks (about 5 minutes on a 2-core machine):
#   1. prep: HDF5 with descriptive captions, 40% of the training captions misaligned
#      (--noise 0.4), and a clean curated subset of 10,000 pairs;
#   2. a reference model trained on the curated subset;
#   3. its embeddings of the noisy training set, cached (curaclip embed);
#   4. the learner, selecting every batch of 256 jointly from a super-batch of
#      1,280 by learnability (f = 0.8, configs/tiny_jest.ini);
#   5. evaluation (zero-shot accuracy, retrieval R@1/5/10).
# JEST=0 trains the plain tiny recipe (configs/tiny.ini) on the clean captions instead.
#   bash jobs/local/quickstart.sh            (RANKS=4 for more ranks, JEST=0 for no curation)
set -euo pipefail
cd "$(dirname "$0")/../.."
t0=$(date +%s)
bash jobs/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target curaclip   # the tests are built by tests/run_all.sh
t_build=$(date +%s)

ranks=${RANKS:-2}
run_mpi() { bash jobs/local/mpirun.sh "$ranks" build/curaclip "$@"; }
stamp=$(date +%Y%m%d-%H%M%S)

if [ "${JEST:-1}" = "0" ]; then
  data=data/fashion-mnist
  [ -f "$data/train.h5" ] || build/curaclip prep fashion-mnist --out "$data"
  run=runs/tiny-$stamp
  run_mpi train --config configs/tiny.ini --data.train "$data/train.h5" --data.eval "$data/test.h5" --train.out "$run"
else
  data=data/fashion-mnist-noisy
  [ -f "$data/train.h5" ] || build/curaclip prep fashion-mnist --out "$data" --noise 0.4 --curated 10000
  ref=runs/reference-$stamp
  echo "== reference model on the curated subset"
  run_mpi train --config configs/tiny.ini --data.train "$data/curated.h5" --data.eval "$data/test.h5" \
    --train.out "$ref" --train.steps 800 --train.eval_every 0 --train.log_every 200
  echo "== reference embeddings of the noisy training set"
  run_mpi embed --checkpoint "$ref" --data "$data/train.h5" --out "$ref/train_emb.h5" --what both
  run=runs/tiny-jest-$stamp
  echo "== learner with JEST (f = 0.8)"
  run_mpi train --config configs/tiny_jest.ini --data.train "$data/train.h5" --data.eval "$data/test.h5" \
    --train.out "$run" --jest.reference "$ref/$(cat "$ref/latest")" --jest.reference_cache "$ref/train_emb.h5"
fi
echo "== evaluation"
run_mpi eval --checkpoint "$run" --data "$data/test.h5" --json "$run/eval.json"
/usr/bin/python3 bench/plot_metrics.py "$run" || echo "(plot skipped)"
t_end=$(date +%s)
echo "install + build: $((t_build - t0)) s; prepare + train + evaluate: $((t_end - t_build)) s; run folder: $run"
