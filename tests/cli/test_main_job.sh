#!/usr/bin/env bash
# The main job's pieces through the real command line, on a small slice of
# Fashion-MNIST: prep -> train on 2 ranks via jobs/local/train.sh (progress lines,
# metrics.jsonl, periodic eval) -> SIGTERM preemption (checkpoint, exit 75) ->
# resume -> eval (table + JSON) -> plot script (PNG). A stop on a signal exits 75
# (stopped to be resumed; docs/training.md).
#   usage: test_main_job.sh path/to/curaclip
set -u
BIN=${1:?usage: $0 path/to/curaclip}
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export CURACLIP_BIN=$BIN
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
pass=0; fail=0
check() {  # check NAME COMMAND...
  local name=$1; shift
  if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); echo "ok   $name"; else fail=$((fail + 1)); echo "FAIL $name"; fi
}

"$BIN" prep fashion-mnist --out "$W/d" --limit 2000 > "$W/prep.log" 2>&1
check "prep wrote train/test/tokenizer" test -f "$W/d/train.h5" -a -f "$W/d/test.h5" -a -f "$W/d/tokenizer.bpe"
check "prep printed example captions" grep -q "examples:" "$W/prep.log"

COMMON=(--data.train "$W/d/train.h5" --data.eval "$W/d/test.h5" --train.batch_size 64 --train.warmup 5
        --train.log_every 5)
timeout 300 bash jobs/local/train.sh 2 configs/tiny.ini "${COMMON[@]}" --train.steps 40 --train.eval_every 20 --train.out "$W/run" > "$W/train.log" 2>&1
check "train exited 0" test $? -eq 0
check "progress line: step, loss, ex/s, eta" grep -qE "step +40/40 +loss [0-9.]+ .* ex/s .*eta" "$W/train.log"
check "memory printed before step 1" grep -q "arenas: parameters" "$W/train.log"
check "metrics.jsonl is JSON with losses and evals" /usr/bin/python3 -c "
import json, sys
rows = [json.loads(l) for l in open('$W/run/metrics.jsonl')]
train = [r for r in rows if not r.get('eval')]; ev = [r for r in rows if r.get('eval')]
assert len(train) == 8 and all(r['loss'] > 0 for r in train), train
assert len(ev) == 2 and 0 <= ev[-1]['zeroshot_top1'] <= 1, ev"
check "checkpoint and latest pointer" test -f "$W/run/step_00000040.h5" -a -f "$W/run/latest"
check "config.ini records the options" grep -q "batch_size = 64" "$W/run/config.ini"

# Preemption: SIGTERM to the ranks mid-run -> checkpoint, clean exit, then resume to the end.
bash jobs/local/train.sh 2 configs/tiny.ini "${COMMON[@]}" --train.steps 100000 --train.eval_every 0 \
  --train.out "$W/pre" > "$W/pre.log" 2>&1 &
launcher=$!
for _ in $(seq 1 120); do grep -q "step  *5/" "$W/pre.log" 2>/dev/null && break; sleep 0.5; done
# Signal the ranks themselves (as srun forwards Slurm's signal), not mpirun.
for p in $(pgrep -x curaclip); do grep -q "$W/pre" "/proc/$p/cmdline" 2>/dev/null && kill -TERM "$p"; done
wait $launcher; rc=$?
check "preempted run exited 75 (stopped to be resumed)" test $rc -eq 75
check "preemption checkpointed" grep -q "preemption signal: checkpointed step" "$W/pre.log"
check "preemption left a latest pointer" test -f "$W/pre/latest"
step=$(sed -E 's/step_0*([0-9]+)\.h5/\1/' "$W/pre/latest")
# (the run keeps its 100000 steps: a resume never shortens the schedule; stop_at ends this segment)
RESUME=1 timeout 300 bash jobs/local/train.sh 2 configs/tiny.ini "${COMMON[@]}" --train.steps 100000 \
  --train.stop_at $((step + 10)) --train.eval_every 0 --train.out "$W/pre" > "$W/resume.log" 2>&1
check "resume continued from the preemption checkpoint" grep -q "resumed from .*step_0*${step}.h5 at step ${step}" "$W/resume.log"
check "resumed run reached its stop_at with a checkpoint" test -f "$W/pre/$(printf 'step_%08d.h5' $((step + 10)))"

# Evaluation and plots.
timeout 300 bash jobs/local/mpirun.sh 2 "$BIN" eval --checkpoint "$W/run" --data "$W/d/test.h5" --json "$W/eval.json" > "$W/eval.log" 2>&1
check "eval printed zero-shot and retrieval" grep -q "image -> text" "$W/eval.log"
check "eval JSON" /usr/bin/python3 -c "import json; r = json.load(open('$W/eval.json')); assert 0 <= r['zeroshot_top1'] <= 1"
if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
  check "plot script wrote a PNG" /usr/bin/python3 bench/plot_metrics.py "$W/run" --out "$W/curves.png"
  check "PNG is non-empty" test -s "$W/curves.png"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
