#!/usr/bin/env bash
# Users' own data through the real command line (docs/data.md "Your own data"):
# a generated image-text corpus in img2dataset's webdataset layout, as a CSV and as a
# class folder -> `prep` under mpirun (1 and 2 ranks give the same bytes; bad
# samples listed; a kill between shards resumes to the same bytes) -> train the tiny
# RGB recipe on 2 ranks -> eval -> info; files rewritten by h5py still load, and
# token rows without end of text are refused naming the row.
#   usage: test_own_data.sh path/to/curaclip
set -u
BIN=$(realpath "${1:?usage: $0 path/to/curaclip}")
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
REPO=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
pass=0; fail=0
check() {  # check NAME COMMAND...
  local name=$1; shift
  if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); echo "ok   $name"; else fail=$((fail + 1)); echo "FAIL $name"; fi
}
same_tree() {  # same_tree A B: every file of A has the same bytes in B, and B has no other file
  [ "$(cd "$1" && find . -type f | sort)" = "$(cd "$2" && find . -type f | sort)" ] || return 1
  (cd "$1" && find . -type f) | while read -r f; do cmp -s "$1/$f" "$2/$f" || { echo "differs: $f"; exit 1; }; done
}
PY=/usr/bin/python3
MPI=(mpiexec -n 2 --oversubscribe)

$PY "$REPO/tests/cli/make_image_text_data.py" "$W/in" --bad || { echo "FAIL generating the corpus"; exit 1; }
cd "$W/in"
PREP=(--image-size 32 --context 32 --vocab 1024)

# ---- webdataset (img2dataset's layout, .parquet and _stats.json beside the tars)
"${MPI[@]}" "$BIN" prep webdataset 'wds/{00000..00003}.tar' --out d2 "${PREP[@]}" > "$W/prep2.log" 2>&1
check "prep webdataset on 2 ranks exits 0" test $? -eq 0
check "progress line: shards, samples/s, ETA, rejected" grep -qE "prep: 4/4 shards, 322 samples \(320 kept, 2 rejected: .*samples/s, ETA" "$W/prep2.log"
check "bad samples listed with reasons" bash -c "grep -qP '^wds/00000.tar\tbad00001\tundecodable_image\t' d2/data.rejects.tsv && grep -qP '^wds/00000.tar\tbad00002\tmissing_caption\t' d2/data.rejects.tsv && [ \$(grep -vc '^#' d2/data.rejects.tsv) -eq 2 ]"
# (the same command line in two folders: the creation command is recorded in the files)
mkdir -p one two
(cd one && "$BIN" prep webdataset '../wds/{00000..00003}.tar' --out d "${PREP[@]}" --quiet) > /dev/null 2>&1
(cd two && "${MPI[@]}" "$BIN" prep webdataset '../wds/{00000..00003}.tar' --out d "${PREP[@]}" --quiet) > /dev/null 2>&1
check "1 and 2 ranks write the same bytes" same_tree one/d two/d
"$BIN" info d2/data.h5 > "$W/info.log" 2>&1
check "info: rows, shards, rejects, captions" bash -c "grep -qE 'rows +320' '$W/info.log' && grep -qE 'shards +4' '$W/info.log' && grep -q '2 rejected (1 undecodable_image, 1 missing_caption)' '$W/info.log' && grep -q '\[0\] a ' '$W/info.log'"
before=$(md5sum d2/data.h5)
"$BIN" prep webdataset 'wds/{00000..00003}.tar' --out d2 "${PREP[@]}" > "$W/again.log" 2>&1
check "a finished dataset is never overwritten" bash -c "[ \$? -ne 0 ] || true; grep -q 'exists already' '$W/again.log' && [ \"\$(md5sum d2/data.h5)\" = '$before' ]"

# ---- CSV, killed between shards, resumed
CSV=(prep csv ../csv/index.csv --out d --tokenizer ../d2/tokenizer.bpe --rows-per-shard 8 "${PREP[@]}")
mkdir -p clean killed
(cd clean && "$BIN" "${CSV[@]}") > /dev/null 2>&1
check "prep csv exits 0" test -f clean/d/data.h5
(cd killed && exec "$BIN" "${CSV[@]}") > "$W/killed.log" 2>&1 &
pid=$!
for _ in $(seq 1 500); do [ -f killed/d/data-shards/part-00001.h5 ] && break; sleep 0.01; done
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
check "the kill came before the end" test ! -f killed/d/data.h5
(cd killed && "$BIN" "${CSV[@]}") > "$W/resume.log" 2>&1
check "the rerun resumes (skips finished shards)" grep -qE "resumed: [0-9]+ of 40 shards" "$W/resume.log"
check "resumed bytes equal an uninterrupted run" same_tree clean/d killed/d

# ---- an evaluation folder with the training tokenizer
"$BIN" prep folder eval --out d2 --name test --image-size 32 --context 32 --caption-template "a photo of a {} shape." > /dev/null 2>&1
check "prep folder writes labels and class names" bash -c "'$BIN' info d2/test.h5 | grep -q 'class names     blue, green, red, yellow'"

# ---- train the tiny RGB recipe on 2 ranks, evaluate
"${MPI[@]}" "$BIN" train --config "$REPO/configs/tiny_rgb.ini" --data.train d2/data.h5 --data.eval d2/test.h5 \
  --model.vocab_size 1024 --train.steps 60 --train.batch_size 64 --train.warmup 5 --train.log_every 20 \
  --train.out run > "$W/train.log" 2>&1
check "train on the prepared data exits 0" test $? -eq 0
"${MPI[@]}" "$BIN" eval --checkpoint run --data d2/test.h5 --templates "$W/t.txt" > /dev/null 2>&1  # no such file
check "eval refuses a missing templates file" test $? -ne 0
printf 'a photo of a {} shape.\na {} thing.\n' > "$W/t.txt"
"${MPI[@]}" "$BIN" eval --checkpoint run --data d2/test.h5 --templates "$W/t.txt" --json "$W/eval.json" > "$W/eval.log" 2>&1
check "eval: zero-shot above chance, JSON fields" $PY -c "
import json; r = json.load(open('$W/eval.json'))
assert r['zeroshot_top1'] > 0.5 and r['zeroshot_templates'] == 2, r
assert 0 <= r['zeroshot_mean_per_class_recall'] <= 1 and 0 <= r['t2i_r1'] <= 1, r"

# ---- files other tools wrote: h5py rewrites a string attribute (variable-length UTF-8)
cp d2/data.h5 d2/h5py.h5
$PY -c "import h5py; f = h5py.File('d2/h5py.h5', 'a'); f.attrs['tokenizer_id'] = f.attrs['tokenizer_id']; f.attrs['source'] = 'caf\u00e9'"
"${MPI[@]}" "$BIN" train --config "$REPO/configs/tiny_rgb.ini" --data.train d2/h5py.h5 --model.vocab_size 1024 \
  --train.steps 2 --train.batch_size 64 --train.warmup 1 --train.out run_h5py > "$W/h5py.log" 2>&1
check "a file whose attributes h5py rewrote trains" test $? -eq 0
# ... and a shard whose row 3 lost its end-of-text token
cp d2/test-shards/part-00000.h5 "$W/noeot.h5"
$PY -c "
import h5py
f = h5py.File('$W/noeot.h5', 'a'); t = f['tokens'][3]; eot = int(f.attrs['eot_id'])
t[t == eot] = 5; f['tokens'][3] = t"
"$BIN" eval --checkpoint run --data "$W/noeot.h5" --tokenizer d2/tokenizer.bpe > "$W/noeot.log" 2>&1
check "token rows without end of text are refused, naming the row" bash -c "[ $? -ne 0 ] && grep -q 'noeot.h5: /tokens row 3 has no end-of-text token' '$W/noeot.log'"

echo "own data: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
