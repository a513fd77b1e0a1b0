// `curaclip train-experts` (docs/mode.md §`train-experts`: experts on node groups): all MoDE experts in one mpirun. The
// ranks are split into node groups (mode/experts.h: plan_node_groups), each
// group gets its own communicator (MPI_Comm_split) and trains its experts one
// after another, each from the seed checkpoint (train.init_from) into
// <train.out>/expert_<c>/, exactly as `curaclip train --mode.expert c` on the
// group's ranks would. Groups never communicate until the final barrier.
//
// Resume (--train.resume latest): a finished expert (its final checkpoint
// exists) is skipped, an interrupted one resumes, one not yet begun starts.
// After a preemption stop the group starts no further expert.
#pragma once

#include <string>
#include <vector>

#include "mode/experts.h"
#include "train/trainer.h"

namespace curaclip::mode {

// Collective over world. node_of_rank overrides the node discovery (tests).
// Returns the process exit code.
int train_experts(const TrainOptions& base, const ModelConfig& model_cfg, const Communicator& world,
                  const std::vector<int>* node_of_rank = nullptr);

// The run folder of expert c under a train-experts output folder.
std::string expert_dir(const std::string& out, int64_t c);

// `text` (INI, as parse_options records it) with section.key set to value.
std::string ini_set(const std::string& text, const std::string& section, const std::string& key,
                    const std::string& value);

}  // namespace curaclip::mode
