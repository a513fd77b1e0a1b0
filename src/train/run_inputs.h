// What a run is started from and checked against before step 1: the rows it trains
// on (all, explicit rows, or a MoDE expert's share of a cluster side file), the
// parameters it starts from (train.init_from), and the side files it reads (a JEST
// reference and its cached embeddings, a MoDE assignment) checked against the data.
// Each check throws an Error naming the option, the file and what was expected.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <memory>

#include "io/dataset_reader.h"
#include "io/loader.h"
#include "jest/config.h"
#include "model/clip_model.h"
#include "tokenizer/bpe_tokenizer.h"
#include "train/run_start.h"
#include "train/trainer.h"

namespace curaclip {

// What a run reads, every part checked before anything is written.
struct RunInputs {
    BpeTokenizer tok;                  // data.tokenizer
    io::LoaderOptions loader_options{};  // what data.train must be, and the rows trained on
    std::unique_ptr<io::Loader> loader{};
    jest::JestConfig jest{};           // opt.jest with the loss, seed and selected batch b
    int64_t super_batch = 0;           // rows read per step: B with JEST, else the global batch
    int64_t local_batch = 0;           // this rank's share of the trained batch
    std::string init_path{};           // train.init_from resolved ("" = none)
    std::string jest_reference{};      // jest.reference resolved ("" = none)
    std::string train_fingerprint{};   // io::dataset_fingerprint of data.train (rank 0 only)
};
// Collective. In order: the tokenizer against model.vocab_size, data.eval, the JEST
// configuration, the multi-resolution split over ranks, the rows (explicit or a MoDE
// expert's), data.train (opened by the loader, every token row checked), init_from,
// the JEST reference and cache, the data a resume continues on (require_resumed_data),
// and that the run folder takes files. Throws an Error naming the option and file.
RunInputs check_run_inputs(const TrainOptions& opt, const ModelConfig& model_cfg, const RunStart& start,
                           const Communicator& comm);

// A side file (embeddings, MoDE assignment) records the dataset it was made from
// (its path and io::dataset_fingerprint) and the model that made it: used with
// another dataset or model of the same size, its rows would silently belong to other
// examples. The fingerprint decides (a copy staged elsewhere is the same data); a
// side file without one is compared by path, and only a note is printed (by root).
// `option` names the option.
void require_side_file_source(const std::string& option, const std::string& side_file, const std::string& dataset,
                              const std::string& dataset_fp, const std::string& stored_dataset,
                              const std::string& stored_fp, const std::string& model, const std::string& stored_model,
                              bool root);

// train.init_from resolved (a run folder means its latest checkpoint); "" when the
// run starts from fresh weights or resumes (the run's own checkpoint wins).
std::string resolve_init_from(const TrainOptions& opt);
// Heads and activation are not in the parameter shapes: a recipe that differs from
// init_from's would silently compute another model from the same weights.
void require_init_architecture(const std::string& path, const ModelConfig& cfg);
// Loads init_from's parameters into `model` (parameters only). A checkpoint of the
// other contrastive loss is copied over by name (logit_bias initialised or dropped).
// Returns what was done beyond a plain load ("" for a plain load).
std::string load_initial_parameters(const std::string& path, ClipModel& model);
// train.init_optimizer: loads init_from's parameters and AdamW moments into `model`
// and returns the moments' step count (the checkpoint's step plus its own offset),
// for AdamW::set_moment_step_offset. Error, naming the file, for a safetensors
// weights file (no optimizer state) or a checkpoint of the other contrastive loss.
int64_t load_initial_optimizer(const std::string& path, ClipModel& model);

// data.eval opened with the checks evaluation makes (rows, labels within
// /classnames), so that a missing or wrong evaluation set stops the run before step
// 1 instead of after the last one. Nothing when data.eval is empty.
void check_eval_set(const TrainOptions& opt, const io::DatasetExpect& expect);

// jest.reference resolved and checked (it must read this data's token ids), and
// jest.reference_cache checked against data.train and the reference. Returns the
// reference checkpoint's path ("" when the run has none). train_fingerprint gives
// io::dataset_fingerprint of data.train (called only when there is a cache to check).
std::string check_jest_reference(const TrainOptions& opt, const io::DatasetExpect& expect,
                                 const std::function<std::string()>& train_fingerprint, bool root);

// Whether every parameter value is finite (one host pass; only used when steps were skipped).
bool parameters_finite(ParameterSet& ps);

}  // namespace curaclip
