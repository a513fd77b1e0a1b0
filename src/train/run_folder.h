// The run folder (train.out) and its policy: what makes it hold a run, the marker of
// a finished run, the write probe made before step 1, and fresh names for records.
// docs/training.md §Output of a run lists the files.
#pragma once

#include <cstdint>
#include <string>

#include "mpi/communicator.h"

namespace curaclip {

// The marker of a finished run, <train.out>/finished ("step N" and the final
// checkpoint's name), written by rank 0 after the final checkpoint and the final
// evaluation's metrics line. A resume of a finished run does nothing (a scheduler may
// start a job again: a requeue, a signal during the final evaluation), so the run is
// never trained on and metrics.jsonl never gets a second final evaluation line.
inline constexpr const char* kFinishedMarker = "finished";

// Whether dir holds a run: a config.ini, checkpoints (latest) or metrics.
bool holds_run(const std::string& dir);
// The step recorded in dir's marker; -1 when there is no marker (0 when it has no
// readable step: it still marks the run finished).
int64_t finished_step(const std::string& dir);
// Writes the marker (checked, atomically) / removes it (training again).
void mark_finished(const std::string& dir, int64_t step, const std::string& checkpoint_file);
void clear_finished(const std::string& dir);
// Whether dir/metrics.jsonl already holds the evaluation line of `step`.
bool metrics_has_eval(const std::string& dir, int64_t step);

// Creates the run folder (if missing) and a probe file in it, then removes the
// probe: a read-only or full file system, a path through a file or missing rights
// are found before step 1, not at the first checkpoint. "" when writable, else the
// message.
std::string probe_run_folder(const std::string& dir);

// A name in dir that does not exist yet: base + ext, else base_2 + ext, ...
std::string fresh_name(const std::string& dir, const std::string& base, const std::string& ext);

// Collective: every rank throws the same Error when rank 0 found one (its text
// travels along), so a problem only rank 0 can see (its file system) ends every rank
// the same way.
void agree_on_error(const Communicator& comm, const std::string& root_error);

}  // namespace curaclip
