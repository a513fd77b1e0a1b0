#!/usr/bin/env bash
# A full disk during a checkpoint (issue 11, item 1): the run's folder lives on a
# small tmpfs this test mounts; a run checkpointed at step 2 is resumed with free
# space a little short of one checkpoint, exactly one checkpoint (the checkpoint
# fits, `latest` does not), and far too little. Each must exit non-zero (no
# segfault, no abort) with a message naming the path and saying the disk is full,
# leave the step-2 checkpoint and `latest` byte for byte and no *.tmp behind; with
# space again, the resume from `latest` finishes the run.
#   usage: test_full_disk.sh path/to/curaclip
# Needs mount(8) (root, as in CI); prints "skipped: <reason>" and exits 0 otherwise.
set -u
BIN=$(realpath "${1:?usage: $0 path/to/curaclip}")
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
W=$(mktemp -d)
M=$(mktemp -d)
MOUNTED=0
cleanup() {
  if [ "$MOUNTED" = 1 ]; then umount "$M" || umount -l "$M"; fi
  rmdir "$M" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && echo "keeping $W"
pass=0; fail=0

check() {  # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); echo "ok   $name"; else fail=$((fail + 1)); echo "FAIL $name"; fi
}

if ! mount -t tmpfs -o size=64m curaclip_full_disk "$M" 2>"$W/mount.err"; then
  echo "skipped: cannot mount a tmpfs ($(tr '\n' ' ' < "$W/mount.err"))"
  exit 0
fi
MOUNTED=1
resize() { mount -o remount,size="$1" "$M"; }
used() { df -B1 --output=used "$M" | tail -1 | tr -d ' '; }

FM=/usr/share/datasets/fashion-mnist
if [ ! -d "$FM" ]; then echo "dataset-fashion-mnist is not installed"; exit 1; fi
"$BIN" prep fashion-mnist --out "$W/d" --limit 300 >/dev/null || { echo "prep failed"; exit 1; }
RUN=$M/run
TRAIN=(train --config configs/tiny.ini --data.eval "" --data.train "$W/d/train.h5" --data.tokenizer "$W/d/tokenizer.bpe"
       --train.batch_size 32 --train.steps 4 --train.stop_at 2 --train.warmup 0 --train.log_every 1 --train.out "$RUN")

# Segment 1: steps 1-2, checkpoint step 2 and `latest`; kept as the snapshot every case starts from.
timeout 300 "$BIN" "${TRAIN[@]}" >"$W/first.log" 2>&1 || { echo "first segment failed"; cat "$W/first.log"; exit 1; }
cp -a "$RUN" "$W/snapshot"
CKPT=$(stat -c %s "$RUN/step_00000002.h5")
restore() { rm -rf "$RUN"; cp -a "$W/snapshot" "$RUN"; }

# Rehearsal with room to spare: the bytes the resumed segment needs in all (the
# checkpoint, the new pointer, what the trainer writes besides) as tmpfs counts them.
restore
u0=$(used)
timeout 300 "$BIN" "${TRAIN[@]}" --train.resume latest >"$W/rehearsal.log" 2>&1
rc=$?
check "rehearsal: resume with room finishes" test $rc -eq 0 -a "$(cat "$RUN/latest" 2>/dev/null)" = step_00000004.h5
rm -f "$RUN/finished"  # written after the final checkpoint: not part of what the checkpoint needs
NEED=$(( $(used) - u0 ))
echo "checkpoint $CKPT bytes; the resumed segment needs $NEED bytes"

# full_case NAME FREE_BYTES PATTERN [LAUNCHER...]: resume with FREE_BYTES free.
full_case() {
  local name=$1 free=$2 pattern=$3; shift 3
  restore
  resize $(( $(used) + free ))
  local out rc
  out=$(timeout 300 "$@" "$BIN" "${TRAIN[@]}" --train.resume latest 2>&1); rc=$?
  resize 64m
  check "$name: exits non-zero, no crash (exit $rc)" test $rc -ne 0 -a $rc -ne 124 -a $rc -ne 134 -a $rc -ne 139
  check "$name: no segfault or abort reported" bash -c '! grep -qiE "segmentation fault|signal: |core dumped|aborted" <<<"$1"' _ "$out"
  if grep -qE -- "$pattern" <<<"$out"; then
    pass=$((pass + 1)); echo "ok   $name: message"
  else
    fail=$((fail + 1)); echo "FAIL $name: message (wanted /$pattern/)"; echo "$out" | tail -5 | sed 's/^/     /'
  fi
  check "$name: step 2 checkpoint unchanged" cmp -s "$RUN/step_00000002.h5" "$W/snapshot/step_00000002.h5"
  check "$name: latest unchanged" cmp -s "$RUN/latest" "$W/snapshot/latest"
  check "$name: no step 4 file" test ! -e "$RUN/step_00000004.h5"
  check "$name: no *.tmp left" test -z "$(find "$RUN" -name '*.tmp')"
}

Q=$(printf '%s' "$RUN" | sed 's/[.[\*^$]/\\&/g')  # the run folder as a regex
full_case "a little short of one checkpoint" $(( NEED - 32768 )) \
  "checkpoint $Q/step_00000004\.h5 not written: cannot write $Q/step_00000004\.h5\.tmp.*No space left on device \(disk full\); $Q/latest still names step_00000002\.h5"
full_case "exactly one checkpoint (the pointer does not fit)" "$NEED" \
  "checkpoint $Q/step_00000004\.h5 not written: cannot write $Q/latest\.tmp.*No space left on device \(disk full\); $Q/latest still names step_00000002\.h5"
full_case "far too little" 8192 "$Q/.*(No space left on device|disk full)"
if command -v mpirun >/dev/null; then
  full_case "2 ranks, a little short" $(( NEED - 32768 )) \
    "step_00000004\.h5 not written: cannot write $Q/step_00000004\.h5\.tmp.*disk full" mpirun -n 2 --oversubscribe
fi

# Space again: the resume from `latest` finishes the run (and removes the
# temporaries a killed earlier write left).
restore
printf partial > "$RUN/step_00000003.h5.tmp"
printf partial > "$RUN/latest.tmp"
out=$(timeout 300 "$BIN" "${TRAIN[@]}" --train.resume latest 2>&1); rc=$?
check "resume after freeing space: exit 0" test $rc -eq 0
check "resume after freeing space: resumed at step 2" grep -q "resumed from $RUN/step_00000002.h5 at step 2" <<<"$out"
check "resume after freeing space: latest names step 4" test "$(cat "$RUN/latest")" = step_00000004.h5
check "resume after freeing space: no *.tmp left" test -z "$(find "$RUN" -name '*.tmp')"

# ---- prep of own data onto a full disk: the unit being written fails cleanly (no
# segfault at exit, no partial shard, no rejects list of an unfinished shard), the
# finished shards stay, and a rerun with space finishes to the bytes of a run that
# never hit the wall.
REPO=$(cd "$(dirname "$0")/../.." && pwd)
/usr/bin/python3 "$REPO/tests/cli/make_image_text_data.py" "$W/corpus" --train 96 --shards 1 --eval 1 >/dev/null ||
  { echo "FAIL generating the corpus"; exit 1; }
PREP=(prep csv "$W/corpus/csv/index.csv" --image-size 64 --rows-per-shard 24 --vocab 600 --quiet)
# (the reference in another folder, with the same command line: it is recorded in the files)
mkdir -p "$W/r" && (cd "$W/r" && "$BIN" "${PREP[@]}" --out prep) >/dev/null 2>&1 || { echo "FAIL reference prep"; exit 1; }
rm -rf "$M/prep"
SHARD=$(stat -c %s "$W/r/prep/data-shards/part-00000.h5")
resize $(( $(used) + SHARD + SHARD / 2 + 65536 ))   # room for a shard and a half
out=$(cd "$M" && timeout 300 "$BIN" "${PREP[@]}" --out prep 2>&1); rc=$?
resize 64m
check "prep on a full disk: exits 1, no crash (exit $rc)" test $rc -eq 1
check "prep on a full disk: says so, naming the shard" grep -qE "prep/data-shards/part-0000[0-9]\.h5\.tmp.*No space left on device" <<<"$out"
check "prep on a full disk: no segfault" bash -c '! grep -qiE "segmentation fault|signal: " <<<"$1"' _ "$out"
check "prep on a full disk: no *.tmp left" test -z "$(find "$M/prep" -name '*.tmp')"
check "prep on a full disk: no dataset joined" test ! -e "$M/prep/data.h5"
check "prep on a full disk: finished shards kept, each with its rejects list" bash -c \
  'for h in "$1"/data-shards/part-*.h5; do [ -f "${h%.h5}.rejects.tsv" ] || exit 1; done; ls "$1"/data-shards/part-*.h5 >/dev/null' _ "$M/prep"
inode=$(stat -c %i "$M/prep/data-shards/part-00000.h5" 2>/dev/null)
out=$(cd "$M" && timeout 300 "$BIN" "${PREP[@]}" --out prep 2>&1); rc=$?
check "prep rerun with space: exit 0" test $rc -eq 0
check "prep rerun with space: the finished shard was kept, not rewritten" \
  test -n "$inode" -a "$inode" = "$(stat -c %i "$M/prep/data-shards/part-00000.h5")"
check "prep rerun with space: the same bytes as a run that never hit the wall" bash -c \
  'cd "$1" && for f in $(find . -type f); do cmp -s "$f" "$2/$f" || exit 1; done' _ "$W/r/prep" "$M/prep"

# ---- small results on a full disk: an eval report and a Fashion-MNIST prep exit 1
# naming the file and the reason, leave nothing half-written, and the same command
# works once there is space again.
rm -rf "$M/prep" "$M/run"
resize $(( $(used) + 4096 ))
dd if=/dev/zero of="$M/fill" bs=4096 count=4 2>/dev/null   # the rest of the space
out=$(timeout 300 "$BIN" eval --checkpoint "$W/snapshot" --data "$W/d/test.h5" --json "$M/ev.json" 2>&1); rc=$?
check "eval --json on a full disk: exits 1 (exit $rc)" test $rc -eq 1
check "eval --json on a full disk: names the file and the reason" grep -qE "$M/ev\.json.*No space left on device" <<<"$out"
check "eval --json on a full disk: no file left" test -z "$(ls "$M" | grep ev.json)"
out=$(timeout 300 "$BIN" prep fashion-mnist --out "$M/fm" --limit 200 2>&1); rc=$?
check "prep fashion-mnist on a full disk: exits 1 (exit $rc)" test $rc -eq 1
check "prep fashion-mnist on a full disk: names the file and the reason" grep -qE "$M/fm/.*No space left on device" <<<"$out"
check "prep fashion-mnist on a full disk: no file left in --out" test -z "$(ls -A "$M/fm" 2>/dev/null)"
rm -f "$M/fill"; resize 64m
out=$(timeout 300 "$BIN" prep fashion-mnist --out "$M/fm" --limit 200 2>&1); rc=$?
check "prep fashion-mnist with space again: the same command succeeds" test $rc -eq 0 -a -f "$M/fm/train.h5" -a -f "$M/fm/tokenizer.bpe"
out=$(timeout 300 "$BIN" eval --checkpoint "$W/snapshot" --data "$W/d/test.h5" --json "$M/ev.json" 2>&1); rc=$?
check "eval --json with space again: a JSON report" /usr/bin/python3 -c "import json; json.load(open('$M/ev.json'))"

echo "full disk: $pass passed, $fail failed"
[ $fail -eq 0 ]
