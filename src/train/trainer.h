// `curaclip train`: data-parallel CLIP training on MPI ranks (docs/architecture.md
// §Data flow of one training step, §Interfaces; docs/training.md §Checkpoints,
// §Preemption and failures).
//
// Each rank reads its slice of every global batch (io::Loader), runs one
// TrainStep (forward, distributed loss, backward, gradient all-reduce, AdamW),
// and rank 0 prints a progress line and appends metrics to <out>/metrics.jsonl.
// Checkpoints go to <out>/ every train.checkpoint_every steps, at the end, and
// when a preemption signal arrives; --train.resume latest continues a run
// exactly (bit for bit on the CPU backend), refusing options that would make it
// another run (src/train/resume_check.h).
//
// Everything a run reads or writes is checked before step 1: the options
// (non-finite or nonsensical values name the option), data.train, data.eval (opened
// and checked against the model and tokenizer), the JEST and multi-resolution sizes
// (never rounded to a multiple of the ranks), init_from, and that train.out can be
// written (a probe file is created and removed). A step whose loss or gradient norm
// is not finite changes nothing ("update skipped"); after train.max_skipped_steps
// such steps in a row the run stops with an Error naming the last good checkpoint
// (none is written while steps are being skipped, and none of non-finite
// parameters, so `latest` keeps pointing at it). metrics.jsonl holds JSON only
// (non-finite numbers are null, src/train/metrics_log.h). A resume writes its
// effective options to config_resume_step_<N>.ini beside config.ini, which keeps the
// options the run began with.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "jest/config.h"
#include "model/model_config.h"
#include "mpi/communicator.h"
#include "optim/adamw.h"

namespace curaclip {

struct TrainOptions {
    std::string train_path, eval_path, tokenizer_path, out_dir, resume, backend = "cpu";
    int64_t global_batch = 256, steps = 1000;
    uint64_t seed = 0;
    OptimizerConfig optim;
    int64_t log_every = 10, eval_every = 0, checkpoint_every = 0;
    int64_t stop_at = 0;  // > 0: checkpoint and exit after this step (a time-limited job segment)
    int threads = 0;
    double grad_bucket_mb = 25.0;  // gradient all-reduce buckets (MiB); 0: one all-reduce per parameter after the backward
    // Consecutive skipped steps (non-finite loss or gradients) after which the run
    // stops with an error; 0: never stop.
    int64_t max_skipped_steps = 20;
    bool overwrite = false;
    std::string config_text;  // every option in effect, stored in checkpoints and the run folder

    // JEST (docs/jest.md §Options): with jest_enabled, train.batch_size is the selected batch b
    // and the loader reads super-batches of B = b / (1 - f).
    bool jest_enabled = false;
    jest::JestConfig jest;
    std::string jest_reference, jest_reference_cache;
    bool jest_score_low_res = false;

    // Start from another run's parameters (not its optimizer state or step): the
    // MoDE seed model. Ignored when resuming (the run's own checkpoint wins). A
    // checkpoint of the other contrastive loss loads too: softmax -> sigmoid starts
    // logit_bias at the SigLIP recipe's -10 (weight_init.cpp), sigmoid -> softmax
    // drops it; both are printed.
    std::string init_from;
    // With init_from: also take its AdamW moments and continue their bias correction
    // from its step count (AdamW::moment_step_offset): the optimizer of a resumed run,
    // on this run's data and learning-rate schedule (as the released MoDE code's
    // experts resume the seed run). Needs a curaclip checkpoint of the same loss.
    bool init_optimizer = false;
    double step_timeout = 0;      // seconds without a finished step before the job is ended (0 = auto)
    // MoDE expert (docs/mode.md §Training an expert): train only on expert mode_expert's rows of the
    // cluster side file mode_assign plus round(mode_ood_share * |cluster|)
    // out-of-cluster rows (mode/experts.h). mode_expert < 0: all data.
    std::string mode_assign;
    int64_t mode_expert = -1;
    double mode_ood_share = 0.02;
    // Or an explicit list of dataset rows to train on (tests, tools); empty: all.
    std::vector<int64_t> rows;
    // Called on every rank with the file rows of its slice of each batch (tests).
    std::function<void(int64_t step, const std::vector<int64_t>& rows)> on_batch_rows;
};

// The option schema and its reading: src/cli/train_options.h.
// Throws an Error naming the first option that is out of range, not finite, or
// nonsensical (e.g. train.lr above 1, train.warmup above train.steps). run_training
// calls it too.
void validate_train_options(const TrainOptions& o);

// The rows a run trains on (opt.rows, or mode_expert's rows of mode_assign;
// empty: all). n_dataset is the size of data.train, checked against the side file;
// `fingerprint` its io::dataset_fingerprint, checked against the one the side file
// records ("" or a side file without one: not compared; root prints a note when the
// recorded path differs).
std::vector<int64_t> training_rows(const TrainOptions& opt, int64_t n_dataset, const std::string& fingerprint = "",
                                   bool root = false);

// Runs the whole training; returns the process exit code (0 also after a clean
// preemption stop, and when a resumed run had already finished). Throws an Error
// (on every rank alike) for bad inputs and for a run stalled on non-finite steps.
int run_training(const TrainOptions& opt, const ModelConfig& model_cfg, const Communicator& comm);

}  // namespace curaclip
