// What the training loop reports: per log window (train.log_every steps) a progress
// line on rank 0's stdout and a row of <train.out>/metrics.jsonl, and a row per
// evaluation. The loss is the mean over the window's steps that were not skipped
// (null in the JSON when all were); the rate counts every step.
//
// metrics.jsonl rows (train/metrics_log.h; readers: bench/bench_common.py,
// bench/plot_metrics.py):
//   {"step", "loss", "lr", "grad_norm", "examples_per_s", "epoch", "skipped",
//    "elapsed_s", "flops", "corrupted_share"[, "jest_score", "superbatch_score"]}
//   {"step", "eval": true, "flops", <eval/evaluate.h report_json fields>}
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "eval/evaluate.h"
#include "train/metrics_log.h"
#include "train/train_step.h"

namespace curaclip {

class StepLog {
public:
    // root: this rank prints and writes (metrics_path opened for appending).
    StepLog(bool root, bool jest, int64_t global_batch, int64_t steps, const std::string& metrics_path);

    // Every step: its result, and with JEST the scores and the corrupted share of the
    // chosen batch (without JEST the corrupted share of the batch).
    void add(const StepResult& r, double batch_score, double superbatch_score, double corrupted_share);
    // The progress line and the metrics row of the window ending at step `done`
    // (1-based), then a new window. lr and grad_norm of the last step.
    void report(int64_t done, double lr, double grad_norm, int64_t epoch, int64_t skipped_total, double total_flops);
    // The evaluation at step `done`: printed, and a metrics row.
    void eval(int64_t done, double total_flops, const std::string& eval_path, const EvalReport& r);

private:
    using Clock = std::chrono::steady_clock;
    bool root_, jest_;
    int64_t global_batch_, steps_;
    MetricsLog metrics_;
    Clock::time_point t_start_, t_window_;
    int64_t window_examples_ = 0, window_steps_ = 0, window_all_steps_ = 0;
    double window_loss_ = 0, window_score_ = 0, window_super_score_ = 0, window_corrupted_ = 0;
};

}  // namespace curaclip
