#include "train/step_log.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace curaclip {

namespace {
std::string format_eta(double seconds) {
    char buf[32];
    const long s = long(seconds + 0.5);
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    return buf;
}

// v as the printf format fmt shows it (the figures keep the digits they always had:
// "%.6f" for a loss, "%.6e" for FLOPs); NaN and infinities pass through (-> null).
double rounded(double v, const char* fmt) {
    if (!std::isfinite(v)) return v;
    char buf[64];
    std::snprintf(buf, sizeof buf, fmt, v);
    return std::strtod(buf, nullptr);
}
}  // namespace

StepLog::StepLog(bool root, bool jest, int64_t global_batch, int64_t steps, const std::string& metrics_path)
    : root_(root), jest_(jest), global_batch_(global_batch), steps_(steps) {
    if (root_) metrics_.open(metrics_path);
    t_start_ = t_window_ = Clock::now();
}

void StepLog::add(const StepResult& r, double batch_score, double superbatch_score, double corrupted_share) {
    window_score_ += batch_score;
    window_super_score_ += superbatch_score;
    window_corrupted_ += corrupted_share;
    if (!r.skipped && std::isfinite(r.loss)) {
        window_loss_ += r.loss;
        ++window_steps_;
    }
    window_examples_ += global_batch_;
    ++window_all_steps_;
}

void StepLog::report(int64_t done, double lr, double grad_norm, int64_t epoch, int64_t skipped_total,
                     double total_flops) {
    const double dt = std::chrono::duration<double>(Clock::now() - t_window_).count();
    const double rate = double(window_examples_) / std::max(dt, 1e-9);
    const double eta = double(steps_ - done) * double(global_batch_) / std::max(rate, 1e-9);
    const double mean_loss = window_steps_ ? window_loss_ / double(window_steps_) : NAN;
    const double n = double(std::max<int64_t>(window_all_steps_, 1));
    if (root_) {
        char extra[160] = "";
        if (jest_)
            std::snprintf(extra, sizeof extra, "  score %.3f (super %.3f)  corrupted %.1f%%", window_score_ / n,
                          window_super_score_ / n, 100 * window_corrupted_ / n);
        std::printf("step %6lld/%lld  loss %.4f  lr %.2e  grad_norm %.3f  %.1f ex/s%s  eta %s\n", (long long)done,
                    (long long)steps_, mean_loss, lr, grad_norm, rate, extra, format_eta(eta).c_str());
        std::fflush(stdout);
        nlohmann::ordered_json row;
        row["step"] = done;
        row["loss"] = rounded(mean_loss, "%.6f");
        row["lr"] = rounded(lr, "%.6e");
        row["grad_norm"] = rounded(grad_norm, "%.6f");
        row["examples_per_s"] = rounded(rate, "%.3f");
        row["epoch"] = epoch;
        row["skipped"] = skipped_total;
        row["elapsed_s"] = rounded(std::chrono::duration<double>(Clock::now() - t_start_).count(), "%.3f");
        row["flops"] = rounded(total_flops, "%.6e");
        row["corrupted_share"] = rounded(window_corrupted_ / n, "%.6f");
        if (jest_) {
            row["jest_score"] = window_score_ / n;
            row["superbatch_score"] = window_super_score_ / n;
        }
        metrics_.write_row(row);
    }
    t_window_ = Clock::now();
    window_examples_ = window_steps_ = window_all_steps_ = 0;
    window_loss_ = window_score_ = window_super_score_ = window_corrupted_ = 0;
}

void StepLog::eval(int64_t done, double total_flops, const std::string& eval_path, const EvalReport& r) {
    if (!root_) return;
    std::printf("eval at step %lld on %s\n%s", (long long)done, eval_path.c_str(), format_report(r).c_str());
    nlohmann::ordered_json row;
    row["step"] = done;
    row["eval"] = true;
    row["flops"] = rounded(total_flops, "%.6e");
    row.update(report_json(r));
    metrics_.write_row(row);
    std::fflush(stdout);
}

}  // namespace curaclip
