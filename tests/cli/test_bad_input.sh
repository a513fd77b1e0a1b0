#!/usr/bin/env bash
# Bad input through the real command line: every case must exit non-zero with a
# message naming the problem, within a time limit (no hang), and leave existing
# files untouched.   usage: test_bad_input.sh path/to/curaclip
set -u
BIN=${1:?usage: $0 path/to/curaclip}
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
pass=0; fail=0

# expect_error NAME PATTERN CMD...: non-zero exit within 120 s and PATTERN in the output.
expect_error() {
  local name=$1 pattern=$2; shift 2
  local out rc
  out=$(timeout 120 "$@" 2>&1); rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -qiE -- "$pattern" <<<"$out"; then
    pass=$((pass + 1)); echo "ok   $name"
  else
    fail=$((fail + 1)); echo "FAIL $name (exit $rc; wanted /$pattern/)"; echo "$out" | tail -5 | sed 's/^/     /'
  fi
}
check() {  # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); echo "ok   $name"; else fail=$((fail + 1)); echo "FAIL $name"; fi
}

# A small real dataset (Fashion-MNIST from Debian's package), and a second one
# with another tokenizer.
FM=/usr/share/datasets/fashion-mnist
if [ ! -d "$FM" ]; then echo "dataset-fashion-mnist is not installed"; exit 1; fi
"$BIN" prep fashion-mnist --out "$W/d" --limit 300 >/dev/null || { echo "prep failed"; exit 1; }
"$BIN" prep fashion-mnist --out "$W/d2" --limit 300 --vocab 560 >/dev/null || { echo "prep 2 failed"; exit 1; }
BASE=(train --config configs/tiny.ini --data.eval "" --train.steps 2 --train.warmup 0 --train.log_every 1)
TRAIN=("${BASE[@]}" --data.train "$W/d/train.h5" --train.batch_size 32)

# Missing inputs.
mkdir -p "$W/empty"
expect_error "prep: missing idx files" "train-images|not found|no such" "$BIN" prep fashion-mnist --source "$W/empty" --out "$W/x"
expect_error "prep: unknown source lists the known ones" "unknown source 'imagenet'.*webdataset, csv, tsv, jsonl, folder" "$BIN" prep imagenet --out "$W/x"
# Users' own sources: the whole source missing or unusable is an error naming it.
expect_error "prep csv: missing index file" "nothere.csv" "$BIN" prep csv "$W/nothere.csv" --out "$W/x"
printf 'path,caption\nimg/a.png,"a, b"\n' > "$W/cols.csv"
expect_error "prep csv: missing column names the columns and option" "no column 'filepath'.*path, caption.*--csv-img-key" "$BIN" prep csv "$W/cols.csv" --out "$W/x"
expect_error "prep webdataset: no shard matches" "no tar shards match|nowhere" "$BIN" prep webdataset "$W/nowhere/{00000..00003}.tar" --out "$W/x"
expect_error "prep webdataset: a missing listed shard" "00001.tar" "$BIN" prep webdataset "$W/cols.csv" "$W/00001.tar" --out "$W/x"
expect_error "prep folder: no class sub-folders" "sub-folder|class" "$BIN" prep folder "$W/empty" --out "$W/x"
expect_error "prep: bad --resize value" "resize.*squash|squash.*center_crop" "$BIN" prep csv "$W/cols.csv" --out "$W/x" --resize squash
expect_error "prep: bad --channels" "channels" "$BIN" prep csv "$W/cols.csv" --out "$W/x" --csv-img-key path --csv-caption-key caption --channels 2
check "prep: failed runs left no dataset behind" test ! -e "$W/x/data.h5"
sum_before=$(md5sum "$W/d/train.h5" "$W/d/tokenizer.bpe")
expect_error "prep: refuses existing outputs" "exist|overwrite" "$BIN" prep fashion-mnist --out "$W/d" --limit 100
check "prep: existing outputs untouched" test "$sum_before" = "$(md5sum "$W/d/train.h5" "$W/d/tokenizer.bpe")"
expect_error "train: missing dataset" "not found.*nothere.h5|nothere.h5.*not found" "$BIN" "${BASE[@]}" --data.train "$W/nothere.h5" --data.tokenizer "$W/d/tokenizer.bpe" --train.out "$W/r0"

# Corrupt and truncated files.
head -c 20000 "$W/d/train.h5" > "$W/trunc.h5"
expect_error "train: truncated HDF5" "trunc.h5" "$BIN" "${BASE[@]}" --data.train "$W/trunc.h5" --data.tokenizer "$W/d/tokenizer.bpe" --train.out "$W/r1"
head -c 4096 /dev/urandom > "$W/garbage.h5"
expect_error "train: not an HDF5 file" "garbage.h5.*(not an HDF5|corrupt)" "$BIN" "${BASE[@]}" --data.train "$W/garbage.h5" --data.tokenizer "$W/d/tokenizer.bpe" --train.out "$W/r2"
printf 'not a merges file\n\xff\xfe junk\n' > "$W/bad.bpe"
expect_error "train: corrupt tokenizer file" "bad.bpe" "$BIN" "${TRAIN[@]}" --data.tokenizer "$W/bad.bpe" --train.out "$W/r3"

# Data that disagrees with the recipe or the tokenizer.
expect_error "train: image size differs from the recipe" "image_size|image size" "$BIN" "${TRAIN[@]}" --model.image_size 32 --model.patch_size 4 --train.out "$W/r4"
expect_error "train: channels differ from the recipe" "channels" "$BIN" "${TRAIN[@]}" --model.channels 3 --model.image_mean 0.5,0.5,0.5 --model.image_std 0.5,0.5,0.5 --train.out "$W/r5"
expect_error "train: dataset of another tokenizer" "tokenizer" "$BIN" "${TRAIN[@]}" --data.tokenizer "$W/d2/tokenizer.bpe" --train.out "$W/r6"

# Unknown and out-of-range configuration.
expect_error "train: unknown option" "unrecognised|unknown|bogus" "$BIN" "${TRAIN[@]}" --train.bogus 3 --train.out "$W/r7"
printf '[train]\nsteps = 2\nbatchsize = 8\n' > "$W/bad.ini"
expect_error "train: unknown key in config file" "bad.ini|batchsize" "$BIN" train --config "$W/bad.ini" --data.train "$W/d/train.h5" --train.out "$W/r8"
expect_error "train: missing config file" "nope.ini" "$BIN" train --config "$W/nope.ini"
expect_error "train: batch size 0" "batch_size" "$BIN" "${BASE[@]}" --data.train "$W/d/train.h5" --train.batch_size 0 --train.out "$W/r9"
expect_error "train: negative learning rate" "lr" "$BIN" "${TRAIN[@]}" --train.lr -1 --train.out "$W/r10"
expect_error "train: heads do not divide width" "vision_heads|divisible" "$BIN" "${TRAIN[@]}" --model.vision_heads 3 --train.out "$W/r11"
expect_error "train: not a number" "steps|invalid" "$BIN" "${TRAIN[@]}" --train.steps many --train.out "$W/r12"
expect_error "train: vocabulary smaller than the tokenizer" "vocab_size" "$BIN" "${TRAIN[@]}" --model.vocab_size 100 --train.out "$W/r13"

# A folder that already holds a run is refused and left as it was.
"$BIN" "${TRAIN[@]}" --train.out "$W/run" >/dev/null 2>&1
sum_before=$(md5sum "$W/run"/*)
expect_error "train: output folder holds a run" "already holds a run" "$BIN" "${TRAIN[@]}" --train.out "$W/run"
check "train: existing run untouched" test "$sum_before" = "$(md5sum "$W/run"/*)"
expect_error "train: resume without a checkpoint" "nothing to resume|latest" "$BIN" "${TRAIN[@]}" --train.out "$W/fresh" --train.resume latest

# Under mpirun a failing rank takes the job down with a message instead of hanging.
expect_error "mpirun -n 2: bad dataset aborts all ranks" "nothere.h5" mpirun -n 2 --oversubscribe "$BIN" "${BASE[@]}" --data.train "$W/nothere.h5" --data.tokenizer "$W/d/tokenizer.bpe" --train.out "$W/r14"
expect_error "mpirun -n 3: batch not divisible by ranks" "divisible" mpirun -n 3 --oversubscribe "$BIN" "${BASE[@]}" --data.train "$W/d/train.h5" --train.batch_size 32 --train.out "$W/r15"

# A world that differs from what Slurm asked for.
expect_error "train: world differs from SLURM_NTASKS" "SLURM_NTASKS" env SLURM_NTASKS=3 "$BIN" "${TRAIN[@]}" --train.out "$W/r16"

# eval on a wrong file
expect_error "eval: missing checkpoint" "not found|latest" "$BIN" eval --checkpoint "$W/none.h5" --data "$W/d/test.h5"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
