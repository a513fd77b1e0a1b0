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

# ---- Trainer robustness (issue 11): refused before step 1 naming the option or file,
# nothing written; non-finite steps stop the run; a resume continues the run it resumes.
ROB0=(train --config configs/tiny.ini --data.train "$W/d/train.h5" --train.log_every 1)
ROB=("${ROB0[@]}" --data.eval "" --train.batch_size 32 --train.steps 2 --train.warmup 0)
ROB_EVAL=("${ROB0[@]}" --train.batch_size 32 --train.steps 2 --train.warmup 0)   # + --data.eval
ROB_LONG=("${ROB0[@]}" --data.eval "" --train.batch_size 32 --train.warmup 0)    # + --train.steps
# expect_refused NAME PATTERN OUT CMD...: expect_error, and OUT (the run folder) was not created.
expect_refused() {
  local name=$1 pattern=$2 out=$3; shift 3
  expect_error "$name" "$pattern" "$@"
  check "$name: no run folder" test ! -e "$out"
}
expect_refused "train: lr 1e6" "train\.lr = 1e\+06 is outside \[0, 1\]" "$W/t1" "$BIN" "${ROB[@]}" --train.lr 1e6 --train.out "$W/t1"
expect_refused "train: lr nan" "option train\.lr = nan is not a finite number" "$W/t2" "$BIN" "${ROB[@]}" --train.lr nan --train.out "$W/t2"
expect_refused "train: image_mean nan" "model\.image_mean: 'nan' holds nan, not a finite number" "$W/t3" "$BIN" "${ROB[@]}" --model.image_mean nan --train.out "$W/t3"
printf '[model]\nimage_std = inf\n' > "$W/inf.ini"
expect_refused "train: image_std inf in a config file" "model\.image_std: 'inf' holds inf" "$W/t4" "$BIN" train --config "$W/inf.ini" --data.train "$W/d/train.h5" --train.out "$W/t4"
expect_refused "train: jest.temperature inf" "option jest\.temperature = inf is not a finite number" "$W/t5" "$BIN" "${ROB[@]}" --jest.temperature inf --train.out "$W/t5"
expect_refused "train: warmup past the steps" "train\.warmup = 100 must be in \[0, train\.steps = 2\]" "$W/t6" "$BIN" "${ROB0[@]}" --data.eval "" --train.batch_size 32 --train.steps 2 --train.warmup 100 --train.out "$W/t6"
expect_refused "train: --config is a folder" "--config $W/d is a folder, not an INI config file" "$W/t7" "$BIN" train --config "$W/d" --data.train "$W/d/train.h5" --train.out "$W/t7"
expect_refused "train: missing data.eval" "data\.eval: .*nothere_eval\.h5" "$W/t8" "$BIN" "${ROB_EVAL[@]}" --data.eval "$W/nothere_eval.h5" --train.out "$W/t8"
head -c 20000 "$W/d/test.h5" > "$W/trunc_eval.h5"
expect_refused "train: corrupt data.eval" "data\.eval: .*trunc_eval\.h5" "$W/t9" "$BIN" "${ROB_EVAL[@]}" --data.eval "$W/trunc_eval.h5" --train.out "$W/t9"
expect_refused "train: data.eval of another tokenizer" "data\.eval: .*d2/test\.h5" "$W/t10" "$BIN" "${ROB_EVAL[@]}" --data.eval "$W/d2/test.h5" --train.out "$W/t10"
touch "$W/plainfile"
expect_error "train: train.out below a file" "train\.out $W/plainfile/run: cannot create the run folder \(Not a directory\)" "$BIN" "${ROB[@]}" --train.out "$W/plainfile/run"
mkdir -p "$W/ro"
if mount -t tmpfs -o ro,size=1m tmpfs "$W/ro" 2>/dev/null; then
  expect_error "train: read-only train.out" "train\.out $W/ro is not writable \(Read-only file system\)" "$BIN" "${ROB[@]}" --train.out "$W/ro"
  expect_error "train: train.out on a read-only file system" "train\.out $W/ro/run: cannot create the run folder \(Read-only file system\)" "$BIN" "${ROB[@]}" --train.out "$W/ro/run"
  umount "$W/ro"
else
  echo "skip train: read-only train.out (cannot mount a read-only tmpfs here: needs CAP_SYS_ADMIN)"
fi
expect_refused "prep: --curated beyond the data" "--curated 100000 exceeds the 300 training examples.*nothing was written" "$W/cur" "$BIN" prep fashion-mnist --out "$W/cur" --limit 300 --curated 100000

# JEST super-batch: b = 18, f = 0.6 is B = 45 on any rank count; 2 ranks cannot split it.
JEST_ARGS=(--data.eval "" --train.steps 2 --train.warmup 0 --jest.enable true --jest.score hard_learner --jest.filter_ratio 0.6 --jest.chunks 3 --train.batch_size 18)
out=$("$BIN" "${ROB0[@]}" "${JEST_ARGS[@]}" --train.out "$W/j1" 2>&1); rc=$?
check "jest: one rank uses the super-batch 45" grep -q "super-batch 45 -> 18" <<<"$out"
check "jest: one rank exits 0" test $rc -eq 0
expect_refused "jest: 2 ranks refuse B = 45 instead of rounding it to 46" "super-batch B = 45 .*not divisible by the 2 ranks" "$W/j2" \
  mpirun -n 2 --oversubscribe "$BIN" "${ROB0[@]}" "${JEST_ARGS[@]}" --train.out "$W/j2"
# A JEST reference whose logit scale is NaN (it is read apart from the parameters).
cp "$W/j1/step_00000002.h5" "$W/nan_ref.h5"
/usr/bin/python3 -c "import h5py; f = h5py.File('$W/nan_ref.h5', 'a'); f['params/logit_scale'][()] = float('nan')"
expect_error "jest: a reference with a NaN logit scale is refused naming it" "nan_ref.h5: params/logit_scale holds a non-finite value" \
  "$BIN" "${ROB0[@]}" --data.eval "" --train.steps 2 --train.warmup 0 --train.batch_size 16 --jest.enable true \
  --jest.score learnability --jest.filter_ratio 0.5 --jest.chunks 2 --jest.reference "$W/nan_ref.h5" --train.out "$W/j3"

# A resume continues the run it resumes.
"$BIN" train --config configs/tiny.ini --data.train "$W/d/train.h5" --data.eval "" --train.batch_size 32 \
  --train.steps 4 --train.stop_at 2 --train.warmup 0 --train.log_every 1 --train.out "$W/rr" >/dev/null 2>&1
sum_before=$(md5sum "$W/rr"/*)
expect_error "resume: another batch size is refused naming both values" "train\.batch_size: the run has 32, this command 64" \
  "$BIN" train --config configs/tiny.ini --train.out "$W/rr" --train.resume latest --train.batch_size 64
expect_error "resume: another activation is refused" "model\.activation: the run has gelu, this command quick_gelu" \
  "$BIN" train --config configs/tiny.ini --train.out "$W/rr" --train.resume latest --model.activation quick_gelu
expect_error "resume: another seed is refused" "train\.seed: the run has 0, this command 3" \
  "$BIN" train --config configs/tiny.ini --train.out "$W/rr" --train.resume latest --train.seed 3
check "resume: refused resumes changed no file" test "$sum_before" = "$(md5sum "$W/rr"/*)"
config_before=$(md5sum < "$W/rr/config.ini")
# The README's resume line: the recipe again (train.steps = 4000 there) continues the run's 4 steps.
out=$("$BIN" train --config configs/tiny.ini --train.out "$W/rr" --train.resume latest 2>&1); rc=$?
check "resume (README line): exit 0" test $rc -eq 0
check "resume (README line): runs to the run's step 4, not the file's 4000" grep -qE "step +4/4 " <<<"$out"
check "resume (README line): says the run's options beat the file's" grep -q "train.steps = 4 (file: 4000)" <<<"$out"
check "resume (README line): final checkpoint" test -f "$W/rr/step_00000004.h5"
check "resume: config.ini not overwritten" test "$config_before" = "$(md5sum < "$W/rr/config.ini")"
check "resume: the resumed options are written beside it" test -f "$W/rr/config_resume_step_2.ini"
out=$("$BIN" train --config configs/tiny.ini --train.out "$W/rr" --train.resume latest --train.steps 6 2>&1); rc=$?
check "resume: more steps are accepted and reported" grep -q "resume: train.steps 4 -> 6 (the cosine schedule now ends at step 6" <<<"$out"
check "resume: more steps exit 0 with step 6" test $rc -eq 0 -a -f "$W/rr/step_00000006.h5"

# A resume never writes over later checkpoints, never shortens the schedule, and
# continues only on the data it was trained on (a file replaced at the same path).
mkdir -p "$W/dr"; cp "$W/d/train.h5" "$W/dr/train.h5"
RS=(train --config configs/tiny.ini --data.train "$W/dr/train.h5" --data.tokenizer "$W/d/tokenizer.bpe" --data.eval ""
    --train.batch_size 32 --train.warmup 0 --train.log_every 1 --train.out "$W/rs")
"$BIN" "${RS[@]}" --train.steps 6 --train.stop_at 4 --train.checkpoint_every 2 >/dev/null 2>&1
sum_before=$(md5sum "$W/rs"/*)
expect_error "resume: from an earlier checkpoint while later ones exist is refused naming them" \
  "rs/step_00000002\.h5 is at step 2 but .*rs holds later checkpoints of the run \(step_00000004\.h5\)" \
  "$BIN" "${RS[@]}" --train.resume "$W/rs/step_00000002.h5"
expect_error "resume: fewer train.steps is refused, pointing at train.stop_at" \
  "train\.steps: the run has 6, this command 5 .*--train\.stop_at 5" "$BIN" "${RS[@]}" --train.resume latest --train.steps 5
"$BIN" prep fashion-mnist --out "$W/d3" --limit 200 --tokenizer "$W/d/tokenizer.bpe" >/dev/null 2>&1
cp "$W/d3/train.h5" "$W/dr/train.h5"
expect_error "resume: data.train replaced at the same path is refused" \
  "was trained on [0-9]+ rows of data\.train .*dr/train\.h5, which now has [0-9]+: the file at that path has changed" \
  "$BIN" "${RS[@]}" --train.resume latest
# ... also when the new file has the same size and tokenizer (its fingerprint differs)
"$BIN" prep fashion-mnist --out "$W/dq" --limit 300 --noise 0.5 --tokenizer "$W/d/tokenizer.bpe" >/dev/null 2>&1
cp "$W/dq/train.h5" "$W/dr/train.h5"
expect_error "resume: data.train replaced by other data of the same size is refused by its fingerprint" \
  "was trained on data\.train .*dr/train\.h5 with fingerprint [0-9a-f]+, but that file now holds other data" \
  "$BIN" "${RS[@]}" --train.resume latest
cp "$W/d/train.h5" "$W/dr/train.h5"
check "resume: refused resumes changed no file of the run" test "$sum_before" = "$(md5sum "$W/rs"/*)"

# A model is never used with token ids of another tokenizer (a silently wrong score).
expect_error "eval: data of another tokenizer than the checkpoint's is refused naming both" \
  "--checkpoint .*run/step_[0-9]+\.h5 was trained on token ids of tokenizer [0-9a-f]+, but .*d2/test\.h5 was tokenized by tokenizer [0-9a-f]+" \
  "$BIN" eval --checkpoint "$W/run" --data "$W/d2/test.h5"
expect_error "embed: data of another tokenizer than the checkpoint's is refused" "was trained on token ids of tokenizer" \
  "$BIN" embed --checkpoint "$W/run" --data "$W/d2/test.h5" --out "$W/x_tok_emb.h5"
expect_refused "train: init_from a model of another tokenizer is refused" "train\.init_from .* was trained on token ids of tokenizer" "$W/t_tok" \
  "$BIN" train --config configs/tiny.ini --data.train "$W/d2/train.h5" --data.tokenizer "$W/d2/tokenizer.bpe" --data.eval "" \
  --train.batch_size 32 --train.steps 2 --train.warmup 0 --train.init_from "$W/run" --train.out "$W/t_tok"
check "tokenizer refusals wrote nothing" test ! -e "$W/x_tok_emb.h5"

# open_clip interop: export never replaces a file unasked (never its own input); open_clip
# weights cannot be resumed; a recipe whose heads or activation differ from what the
# weights were made with is refused (same shapes, other embeddings).
mkdir -p "$W/oc"; cp tests/data/open_clip/tiny_model.safetensors "$W/oc/m.safetensors"
cp tests/data/open_clip/tiny_model_config.json "$W/oc/open_clip_config.json"
cp "$W/run/$(cat "$W/run/latest")" "$W/oc/ck.h5"
printf '[model]\nimage_size = 32\npatch_size = 8\nchannels = 3\nvision_width = 32\nvision_layers = 2\nvision_heads = 1\ntext_width = 32\ntext_layers = 2\ntext_heads = 1\ncontext_length = 16\nvocab_size = 1024\nembed_dim = 32\nloss = sigmoid\nactivation = gelu\nimage_mean = 0.5,0.5,0.5\nimage_std = 0.5,0.5,0.5\n' > "$W/oc/recipe.ini"
oc_sum=$(md5sum "$W/oc"/*)
expect_error "export: --out is the checkpoint itself" "--out $W/oc/ck\.h5 is the checkpoint being exported" \
  "$BIN" export "$W/oc/ck.h5" --format open_clip --out "$W/oc/ck.h5"
expect_error "export: an existing --out is not replaced unasked" "refusing to overwrite existing file $W/oc/m\.safetensors \(--out\); give --overwrite" \
  "$BIN" export "$W/oc/ck.h5" --format open_clip --out "$W/oc/m.safetensors"
expect_error "train: --train.resume of open_clip weights says to use init_from" \
  "--train\.resume: .*m\.safetensors holds open_clip weights only .*--train\.init_from" \
  "$BIN" "${TRAIN[@]}" --train.resume "$W/oc/m.safetensors" --train.out "$W/oc_run"
expect_error "train: --train.init_optimizer of open_clip weights is refused: they hold no moments" \
  "train\.init_optimizer: .*m\.safetensors is a weights file without optimizer state" \
  "$BIN" "${TRAIN[@]}" --train.init_from "$W/oc/m.safetensors" --train.init_optimizer true --train.out "$W/oc_run2"
expect_error "train: --train.init_optimizer needs --train.init_from" "train\.init_optimizer = true needs train\.init_from" \
  "$BIN" "${TRAIN[@]}" --train.init_optimizer true --train.out "$W/oc_run3"
check "init_optimizer refusals made no run folder" test ! -e "$W/oc_run2" -a ! -e "$W/oc_run3"
expect_error "convert: a recipe whose heads and activation differ from the file's description is refused, listing them" \
  "model\.activation: the file's description has quick_gelu, the recipe gelu.*model\.vision_heads: the file's description has 2, the recipe 1" \
  bash -c '"$1" convert --from open_clip "$2/m.safetensors" --model "$2/recipe.ini" --out "$2/x.h5" 2>&1 | tr "\n" " "; exit ${PIPESTATUS[0]}' _ "$BIN" "$W/oc"
# OpenAI's released weights (they carry input_resolution / context_length / vocab_size)
# are QuickGELU: a GELU recipe is refused even without a config file beside them.
/usr/bin/python3 - "$W/oc/m.safetensors" "$W/oc_openai.safetensors" <<'PY'
import json, struct, sys
src, dst = sys.argv[1:]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head, data = json.loads(raw[8:8 + n]), raw[8 + n:]
end = len(data)
for k, v in (("input_resolution", 32), ("context_length", 16), ("vocab_size", 1024)):
    head[k] = {"dtype": "I64", "shape": [], "data_offsets": [end, end + 8]}
    data += struct.pack("<q", v); end += 8
h = json.dumps(head, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
open(dst, "wb").write(struct.pack("<Q", len(h)) + h + data)
PY
expect_error "convert: OpenAI's weights with a GELU recipe are refused (they are QuickGELU)" \
  "model\.activation: the file's description has quick_gelu, the recipe gelu" \
  "$BIN" convert --from open_clip "$W/oc_openai.safetensors" --model "$W/oc/recipe.ini" --out "$W/oc_x.h5"
expect_refused "train: init_from a checkpoint of another activation is refused" \
  "model\.activation: .* has gelu, the recipe quick_gelu" "$W/oc_act" \
  "$BIN" "${TRAIN[@]}" --train.init_from "$W/run" --model.activation quick_gelu --train.out "$W/oc_act"
check "interop refusals changed no file" test "$oc_sum" = "$(md5sum "$W/oc"/*)"
check "interop refusals wrote nothing" test ! -e "$W/oc/x.h5" -a ! -e "$W/oc_run"

# Labels of the evaluation set outside /classnames: refused before step 1, naming the row.
mkdir -p "$W/dl"; cp "$W/d/test.h5" "$W/dl/test.h5"; cp "$W/d/tokenizer.bpe" "$W/dl/"
/usr/bin/python3 -c "import h5py; f = h5py.File('$W/dl/test.h5', 'r+'); f['labels'][9] = 10"
expect_refused "train: data.eval label outside the classes is refused before step 1" \
  "data\.eval: .*dl/test\.h5: /labels\[9\] = 10 is not a class of /classnames \(10 classes" "$W/t_lab" \
  "$BIN" "${ROB_EVAL[@]}" --data.eval "$W/dl/test.h5" --train.out "$W/t_lab"
expect_error "eval: a label outside the classes names the row" "dl/test\.h5: /labels\[9\] = 10 is not a class" \
  "$BIN" eval --checkpoint "$W/run" --data "$W/dl/test.h5"

# Non-finite values: a checkpoint whose patch embedding overflows every forward stops the
# run after train.max_skipped_steps with an error; metrics.jsonl stays JSON (null).
/usr/bin/python3 - "$W/rr/step_00000006.h5" "$W/overflow.h5" "$W/scale100.h5" <<'PY'
import shutil, sys, h5py, numpy as np
src, overflow, scale = sys.argv[1:]
shutil.copy(src, overflow)
with h5py.File(overflow, "r+") as f:
    d = f["params/visual.conv1.weight"]; d[...] = np.full(d.shape, 3e38, np.float32)
shutil.copy(src, scale)
with h5py.File(scale, "r+") as f:
    f["params/logit_scale"][()] = 100.0
PY
expect_error "train: non-finite steps stop the run" "3 steps in a row \(1\.\.3\) had a non-finite loss.*last good checkpoint: none" \
  "$BIN" "${ROB_LONG[@]}" --train.steps 20 --train.max_skipped_steps 3 --train.checkpoint_every 1 --train.init_from "$W/overflow.h5" --train.out "$W/nan"
check "train: stalled run wrote no checkpoint" test -z "$(ls "$W/nan" | grep step_)"
check "train: metrics.jsonl of the stalled run is JSON with null losses" /usr/bin/python3 -c "
import json
rows = [json.loads(l) for l in open('$W/nan/metrics.jsonl')]
assert len(rows) == 3 and all(r['loss'] is None for r in rows) and rows[-1]['skipped'] == 3, rows"
out=$("$BIN" "${ROB_LONG[@]}" --train.steps 3 --train.max_skipped_steps 1 --train.init_from "$W/scale100.h5" --train.out "$W/s100" 2>&1); rc=$?
check "train: logit_scale 100 checkpoint trains (exp capped at 100)" test $rc -eq 0
check "train: logit_scale 100 checkpoint skips no step" /usr/bin/python3 -c "
import json
rows = [json.loads(l) for l in open('$W/s100/metrics.jsonl')]
assert len(rows) == 3 and all(r['skipped'] == 0 and r['loss'] > 0 for r in rows), rows"
# SigLIP from a CLIP (softmax) run, as open_clip users do.
out=$("$BIN" "${ROB[@]}" --model.loss sigmoid --train.init_from "$W/rr" --train.out "$W/sig" 2>&1); rc=$?
check "train: sigmoid model from a softmax checkpoint exits 0" test $rc -eq 0
check "train: ... and says logit_bias starts at -10" grep -q "has no logit_bias: logit_bias starts at -10 as the sigmoid (SigLIP) recipe" <<<"$out"

# ---- Evaluation, embeddings, MoDE side files and dataset shapes (issue 11) ----------
# Non-finite embeddings, duplicate captions, token ids outside the vocabulary,
# shapes claiming more rows than the file holds, and MoDE side files holding NaN:
# each refused naming the file (and checkpoint, dataset, row), exit non-zero, and no
# output written; inputs never change. Needs python3-h5py to make the bad files.
PY=/usr/bin/python3
if ! $PY -c "import h5py" 2>/dev/null; then
  echo "skip evaluation/MoDE bad-input cases: python3-h5py is not installed"
else
  E=$W/evalrob; mkdir -p "$E"
  CK=$(ls "$W/run"/step_*.h5 | tail -1)
  TOKF=$W/d/tokenizer.bpe
  # no_file NAME PATH...: none of the paths (nor PATH.tmp) exists.
  no_file() {
    local name=$1; shift
    local p ok=0
    for p in "$@"; do [ -e "$p" ] || [ -e "$p.tmp" ] && ok=1; done
    check "$name" test $ok -eq 0
  }
  # Bad inputs, made from the good ones.
  cp "$CK" "$E/huge_text.h5"; cp "$CK" "$E/huge_image.h5"
  cp "$W/d/test.h5" "$E/oov.h5"; cp "$W/d/test.h5" "$E/neg.h5"
  $PY - "$E" <<'PYEOF'
import sys, h5py, numpy as np
e = sys.argv[1]
# Finite weights so large that the projections overflow (NaN embeddings from finite weights).
for name, key in (("huge_text.h5", "params/text_projection"), ("huge_image.h5", "params/visual.proj")):
    with h5py.File(f"{e}/{name}", "r+") as f:
        f[key][...] = np.full(f[key].shape, 3e38, dtype=np.float32)
# Token ids outside the vocabulary (row 5) and negative (row 7), in files without an eot_id attribute.
for name, row, val in (("oov.h5", 5, 100000), ("neg.h5", 7, -3)):
    with h5py.File(f"{e}/{name}", "r+") as f:
        del f.attrs["eot_id"]
        t = f["tokens"][...]; t[row, 3] = val; f["tokens"][...] = t
# A dataset whose shape claims 2^40 rows in a file of kilobytes.
with h5py.File(f"{e}/oov.h5", "r") as src, h5py.File(f"{e}/big.h5", "w") as f:
    for k, v in src.attrs.items(): f.attrs[k] = v
    n = 2**40
    f.create_dataset("images", shape=(n, 28, 28, 1), dtype="u1", chunks=(64, 28, 28, 1))
    f.create_dataset("tokens", shape=(n, 16), dtype="i4", chunks=(4096, 16))
    f.create_dataset("captions", shape=(n,), dtype=h5py.string_dtype(), chunks=(4096,))
# Embeddings of 2^40 rows, for cluster.
with h5py.File(f"{e}/big_emb.h5", "w") as f:
    f.create_dataset("caption_emb", shape=(2**40, 64), dtype="f4", chunks=(1024, 64))
PYEOF
  BAD_INPUTS=("$CK" "$W/d/test.h5" "$E/huge_text.h5" "$E/huge_image.h5" "$E/oov.h5" "$E/neg.h5" "$E/big.h5" "$E/big_emb.h5")
  inputs_sum=$(md5sum "${BAD_INPUTS[@]}")

  # Duplicate captions: the same numbers whatever the batch (and the rank count).
  for b in 256 100 7; do
    OMP_NUM_THREADS=2 "$BIN" eval --checkpoint "$W/run" --data "$W/d/test.h5" --batch $b --json "$E/eval_$b.json" >/dev/null 2>&1
  done
  mpirun -n 2 --oversubscribe "$BIN" eval --checkpoint "$W/run" --data "$W/d/test.h5" --batch 64 --json "$E/eval_np2.json" >/dev/null 2>&1
  check "eval: duplicate captions give the same metrics for batch 256, 100, 7 and 2 ranks" $PY -c "
import json, sys
keys = ['i2t_r1', 'i2t_r5', 'i2t_r10', 't2i_r1', 't2i_r5', 't2i_r10', 'zeroshot_top1', 'zeroshot_top5']
runs = [json.load(open('$E/eval_%s.json' % b)) for b in ('256', '100', '7', 'np2')]
sys.exit(0 if all([r[k] for k in keys] == [runs[0][k] for k in keys] for r in runs) else 1)"

  # Non-finite embeddings from finite (huge) weights: eval and embed refuse, nothing written.
  expect_error "eval: non-finite text embeddings name checkpoint, dataset, rows" \
    "checkpoint $E/huge_text.h5 on $W/d/test.h5: the text embeddings of rows 0, 1, 2, 3, 4 and [0-9]+ more .*not finite" \
    "$BIN" eval --checkpoint "$E/huge_text.h5" --data "$W/d/test.h5" --json "$E/x_eval.json"
  expect_error "eval: non-finite image embeddings" "huge_image.h5 on .*test.h5: the image embeddings of rows 0, 1, 2.*not finite" \
    "$BIN" eval --checkpoint "$E/huge_image.h5" --data "$W/d/test.h5" --json "$E/x_eval.json"
  no_file "eval: no --json written after a refusal" "$E/x_eval.json"
  expect_error "embed: non-finite caption embeddings, nothing written" \
    "checkpoint $E/huge_text.h5 on $W/d/test.h5: the caption embeddings of rows 0, 1, 2, 3, 4 and [0-9]+ more are not finite.*nothing was written" \
    "$BIN" embed --checkpoint "$E/huge_text.h5" --data "$W/d/test.h5" --out "$E/x_emb.h5"
  expect_error "embed (2 ranks): non-finite image embeddings" "huge_image.h5 on .*test.h5: the image embeddings of rows 0, 1, 2.*not finite" \
    mpirun -n 2 --oversubscribe "$BIN" embed --checkpoint "$E/huge_image.h5" --data "$W/d/test.h5" --out "$E/x_emb.h5" --what both
  no_file "embed: no --out (nor .tmp) written after a refusal" "$E/x_emb.h5"

  # Token ids outside the model's vocabulary / negative, in files without eot_id:
  # refused naming file and row before any forward pass or step.
  expect_error "eval: id outside the vocabulary names file and row" "oov.h5: /tokens row 5 holds id 100000 at position 3" \
    "$BIN" eval --checkpoint "$W/run" --data "$E/oov.h5" --tokenizer "$TOKF" --json "$E/x_eval.json"
  expect_error "embed: id outside the vocabulary names file and row" "oov.h5: /tokens row 5 holds id 100000.*vocabulary \[0, 1024\)" \
    "$BIN" embed --checkpoint "$W/run" --data "$E/oov.h5" --out "$E/x_emb.h5"
  expect_error "embed (2 ranks): negative id names file and row" "neg.h5: /tokens row 7 holds id -3.*negative" \
    mpirun -n 2 --oversubscribe "$BIN" embed --checkpoint "$W/run" --data "$E/neg.h5" --out "$E/x_emb.h5"
  expect_error "train: id outside the tokenizer names file and row before the first step" "oov.h5: /tokens row 5 holds id 100000" \
    "$BIN" "${BASE[@]}" --data.train "$E/oov.h5" --data.tokenizer "$TOKF" --train.batch_size 32 --train.out "$E/x_run"
  no_file "token refusals wrote nothing" "$E/x_eval.json" "$E/x_emb.h5" "$E/x_run/latest"

  # A shape of 2^40 rows: a message naming the file and dataset, no std::bad_alloc.
  for cmd in eval embed train; do
    case $cmd in
      eval) args=(eval --checkpoint "$W/run" --data "$E/big.h5" --tokenizer "$TOKF") ;;
      embed) args=(embed --checkpoint "$W/run" --data "$E/big.h5" --out "$E/x_emb.h5") ;;
      train) args=("${BASE[@]}" --data.train "$E/big.h5" --data.tokenizer "$TOKF" --train.batch_size 32 --train.out "$E/x_run") ;;
    esac
    expect_error "$cmd: 2^40 rows refused naming file and dataset" \
      "big.h5: dataset '/images' has shape \[1099511627776, 28, 28, 1\] \(862.0 TB\) but the whole file is" "$BIN" "${args[@]}"
  done
  expect_error "cluster: 2^40 embeddings refused naming file and dataset" "big_emb.h5: dataset '/caption_emb' has shape \[1099511627776, 64\]" \
    "$BIN" cluster --embeddings "$E/big_emb.h5" --out "$E/x_assign.h5" --fine 4 --experts 2
  check "no std::bad_alloc anywhere" test -z "$("$BIN" eval --checkpoint "$W/run" --data "$E/big.h5" --tokenizer "$TOKF" 2>&1 | grep -i bad_alloc)"
  no_file "shape refusals wrote nothing" "$E/x_emb.h5" "$E/x_run/latest" "$E/x_assign.h5"

  # MoDE side files: a real one, then NaN centers / out-of-range experts.
  "$BIN" embed --checkpoint "$W/run" --data "$W/d/train.h5" --out "$E/emb.h5" >/dev/null 2>&1
  "$BIN" cluster --embeddings "$E/emb.h5" --out "$E/assign.h5" --fine 8 --experts 2 --verbose 0 >/dev/null 2>&1
  check "MoDE: embed + cluster made a side file" test -s "$E/assign.h5"
  cp "$E/assign.h5" "$E/nan_assign.h5"; cp "$E/assign.h5" "$E/map_assign.h5"; cp "$E/emb.h5" "$E/nan_emb.h5"
  $PY - "$E" <<'PYEOF'
import sys, h5py, numpy as np
e = sys.argv[1]
with h5py.File(f"{e}/nan_assign.h5", "r+") as f:
    c = f["centers/fine"][...]; c[1, 2] = np.nan; f["centers/fine"][...] = c
with h5py.File(f"{e}/map_assign.h5", "r+") as f:
    m = f["centers/fine_to_expert"][...]; m[3] = 7; f["centers/fine_to_expert"][...] = m
with h5py.File(f"{e}/nan_emb.h5", "r+") as f:
    x = f["caption_emb"][...]; x[11, 0] = np.inf; f["caption_emb"][...] = x
PYEOF
  side_sum=$(md5sum "$E"/*assign.h5 "$E"/*emb.h5)
  expect_error "eval --experts: NaN centers refused at read naming the file" \
    "--assign: $E/nan_assign.h5: /centers/fine: fine center 1 holds nan at component 2" \
    "$BIN" eval --experts "$W/run,$W/run" --assign "$E/nan_assign.h5" --data "$W/d/test.h5" --json "$E/x_eval.json"
  expect_error "eval --experts: an expert with non-finite embeddings is named" \
    "expert 0 \(checkpoint $E/huge_text.h5\) on $W/d/test.h5: the text embeddings of rows 0, 1, 2.*not finite" \
    "$BIN" eval --experts "$E/huge_text.h5,$W/run" --assign "$E/assign.h5" --data "$W/d/test.h5" --json "$E/x_eval.json"
  expect_error "eval --experts: expert out of range refused naming the file" \
    "map_assign.h5: /centers/fine_to_expert maps fine center 3 to expert 7, not one of the 2 experts" \
    "$BIN" eval --experts "$W/run,$W/run" --assign "$E/map_assign.h5" --data "$W/d/test.h5"
  expect_error "eval --checkpoint: an ensemble option is refused, not ignored" \
    "--routing-temperature applies to a MoDE ensemble \(--experts\), not to --checkpoint" \
    "$BIN" eval --checkpoint "$W/run" --data "$W/d/test.h5" --routing-temperature 8
  expect_error "eval --routing-scope: an unknown scope is refused" "--routing-scope: 'image' is not one of task, class" \
    "$BIN" eval --experts "$W/run,$W/run" --assign "$E/assign.h5" --data "$W/d/test.h5" --routing-scope image
  # Each class name routed on its own: two copies of one model give that model's accuracy
  # whatever the weights, and every class's weights sum to 1.
  "$BIN" eval --experts "$W/run,$W/run" --assign "$E/assign.h5" --data "$W/d/test.h5" --routing-scope class \
    --json "$E/scope_eval.json" >/dev/null 2>&1
  "$BIN" eval --checkpoint "$W/run" --data "$W/d/test.h5" --json "$E/one_eval.json" >/dev/null 2>&1
  check "eval --routing-scope class: per-class weights, and copies of one model score as that model" $PY -c "
import json; r = json.load(open('$E/scope_eval.json')); one = json.load(open('$E/one_eval.json'))
w = r['weights_zeroshot_per_class']
assert r['routing']['scope'] == 'class' and len(w) == one['zeroshot_classes'], r['routing']
assert all(abs(sum(x) - 1) < 1e-5 for x in w), w
assert abs(r['routed']['zeroshot_top1'] - one['zeroshot_top1']) < 1e-9, (r['routed'], one)
assert r['routed']['zeroshot_per_class_recall'] == one['zeroshot_per_class_recall']"
  expect_error "train --mode.assign: NaN centers refused before the first step" "mode.assign: $E/nan_assign.h5: /centers/fine: fine center 1" \
    "$BIN" "${TRAIN[@]}" --mode.assign "$E/nan_assign.h5" --mode.expert 0 --train.init_from "$W/run" --train.out "$E/x_run"
  # An assignment used with another dataset of the same size: refused by its fingerprint;
  # the same data staged at another path is accepted.
  "$BIN" prep fashion-mnist --out "$E/dn" --limit 300 --noise 0.5 --tokenizer "$W/d/tokenizer.bpe" >/dev/null 2>&1
  expect_error "train --mode.assign: an assignment of other data of the same size is refused" \
    "mode\.assign: $E/assign\.h5 was made from the dataset .*d/train\.h5 \(fingerprint [0-9a-f]+\), but data\.train $E/dn/train\.h5 holds other data" \
    "$BIN" train --config configs/tiny.ini --data.train "$E/dn/train.h5" --data.eval "" --train.steps 1 --train.warmup 0 \
    --train.batch_size 32 --mode.assign "$E/assign.h5" --mode.expert 0 --train.init_from "$W/run" --train.out "$E/x_run"
  mkdir -p "$E/staged"; cp "$W/d/train.h5" "$W/d/tokenizer.bpe" "$E/staged/"
  "$BIN" train --config configs/tiny.ini --data.train "$E/staged/train.h5" --data.eval "" --train.steps 1 --train.warmup 0 \
    --train.batch_size 32 --mode.assign "$E/assign.h5" --mode.expert 0 --train.init_from "$W/run" --train.out "$E/staged_run" >/dev/null 2>&1
  check "train --mode.assign: the same data staged at another path is accepted" test -f "$E/staged_run/step_00000001.h5"
  expect_error "train-experts: NaN centers refused" "nan_assign.h5: /centers/fine: fine center 1" \
    "$BIN" train-experts --config configs/tiny.ini --data.train "$W/d/train.h5" --data.eval "" --train.steps 2 --train.warmup 0 \
    --train.batch_size 32 --mode.assign "$E/nan_assign.h5" --train.init_from "$W/run" --train.out "$E/x_run"
  expect_error "cluster: non-finite embedding names file and row" "nan_emb.h5: dataset '/caption_emb' row 11 holds inf at component 0" \
    "$BIN" cluster --embeddings "$E/nan_emb.h5" --out "$E/x_assign.h5" --fine 8 --experts 2
  no_file "MoDE refusals wrote nothing" "$E/x_eval.json" "$E/x_run/latest" "$E/x_assign.h5"
  check "MoDE: side files untouched" test "$side_sum" = "$(md5sum "$E"/*assign.h5 "$E"/*emb.h5)"
  check "evaluation inputs untouched" test "$inputs_sum" = "$(md5sum "${BAD_INPUTS[@]}")"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
