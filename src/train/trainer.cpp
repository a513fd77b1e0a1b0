// run_training: set up, then the loop. Everything else lives beside it:
//   run_start.h       fresh, resumed, or nothing to do; the run records
//   run_inputs.h      tokenizer, data, rows, side files: checked before anything is written
//   training_setup.h  backend, model, collectives, loss, step, AdamW, JEST; init/resume
//   train_step.h      forward, backward, all-reduce, AdamW (jest_step.h: score, select, train)
//   step_log.h        progress lines and metrics.jsonl;  skip_guard.h  non-finite steps
//   checkpointer.h    checkpoints;  preemption.h  signals, lost ranks, the watchdog
#include "train/trainer.h"

#include <omp.h>
#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "eval/evaluate.h"
#include "model/checkpoint.h"
#include "train/checkpointer.h"
#include "train/preemption.h"
#include "train/run_folder.h"
#include "train/run_inputs.h"
#include "train/run_start.h"
#include "train/skip_guard.h"
#include "train/step_log.h"
#include "train/training_setup.h"

namespace curaclip {

int run_training(const TrainOptions& opt, const ModelConfig& model_cfg, const Communicator& comm) {
    const bool root = comm.rank() == 0;
    const int P = comm.size();
    validate_train_options(opt);
    model_cfg.validate();
    CC_REQUIRE(opt.global_batch % P == 0, "train.batch_size (", opt.global_batch,
               ") must be divisible by the number of ranks (", P, ")");
    if (opt.threads > 0) {
        omp_set_num_threads(opt.threads);
        openblas_set_num_threads(opt.threads);
    }

    const RunStart start = plan_run_start(opt, model_cfg, comm);
    if (start.nothing_to_do) return 0;
    RunInputs in = check_run_inputs(opt, model_cfg, start, comm);
    io::Loader& loader = *in.loader;
    TrainingSetup t(opt, model_cfg, in, comm);
    const int64_t start_step = t.restore(start, in, root);
    if (root) {
        write_run_record(start, opt, start_step, *t.adamw);
        t.print_summary(opt, in, P);
        clear_finished(opt.out_dir);  // training again (overwrite, more steps): not finished until the end
    }
    Checkpointer checkpoints(opt, model_cfg, *t.model, loader, in.tok.id_hex(), in.train_fingerprint, comm,
                             start.resume_path, t.adamw->moment_step_offset());
    StepLog log(root, t.jest_step != nullptr, opt.global_batch, opt.steps,
                (std::filesystem::path(opt.out_dir) / "metrics.jsonl").string());
    SkipGuard skips(opt.max_skipped_steps, root);
    double total_flops = 0;  // model FLOPs of this run segment (scoring included), all ranks
    auto run_eval = [&](int64_t done) {
        if (opt.eval_path.empty()) return;
        const WatchdogPause pause;
        const EvalReport r = evaluate(*t.model, in.tok, opt.eval_path, comm);
        t.model->set_batch(in.local_batch);
        log.eval(done, total_flops, opt.eval_path, r);
    };
    install_preemption_handlers();
    // A rank that stops without dying would leave the others waiting for ever in a
    // collective: the watchdog ends the job with a report (preemption.h).
    const ProgressWatchdog watchdog(opt.step_timeout);

    // ---- the loop ----
    const auto t_start = std::chrono::steady_clock::now();
    for (int64_t s = start_step; s < opt.steps; ++s) {
        const auto t_step = std::chrono::steady_clock::now();
        const io::Batch batch = loader.next();
        if (opt.on_batch_rows) opt.on_batch_rows(s, batch.indices);
        StepResult r;
        if (t.jest_step) {  // score the super-batch, select, exchange, train (jest_step.h)
            const JestStepResult j = t.jest_step->run(batch, *t.adamw, uint64_t(s));
            r = j.train;
            total_flops += j.flops;
            log.add(r, j.batch_score, j.superbatch_score, j.corrupted_share);
        } else {  // forward, backward, all-reduce, AdamW (train_step.h)
            r = t.step->run(batch.images.data(), batch.tokens.data(), *t.adamw);
            total_flops += double(opt.global_batch) * t.step->train_flops_per_pair();
            double corrupted = 0;
            for (uint8_t c : batch.corrupted) corrupted += c;
            if (P > 1) comm.allreduce_sum(&corrupted, 1);
            log.add(r, 0, 0, corrupted / double(opt.global_batch));
        }
        const int64_t done = s + 1;
        skips.note(r, done);
        if (done % opt.log_every == 0 || done == opt.steps || skips.stalled())
            log.report(done, t.adamw->last_lr(), r.grad_norm, batch.epoch, skips.total(), total_flops);
        if (skips.stalled()) skips.fail(done, checkpoints.last());
        note_progress(done, std::chrono::duration<double>(std::chrono::steady_clock::now() - t_step).count());
        if (opt.checkpoint_every > 0 && done % opt.checkpoint_every == 0 && done != opt.steps) {
            // Not while steps are being skipped: `latest` stays the last checkpoint
            // written before them (the state has not changed since, the data position has).
            if (skips.in_a_row() == 0) checkpoints.save(done, false);
            else if (root)
                std::printf("step %lld: no checkpoint while steps are skipped (latest stays %s)\n", (long long)done,
                            checkpoints.last_or("none").c_str());
        }
        if (opt.eval_every > 0 && done % opt.eval_every == 0 && done != opt.steps) run_eval(done);
        // Every rank agrees whether any rank was asked to stop.
        int64_t stop = preemption_requested() ? 1 : 0;
        comm.allreduce_max(&stop, 1);
        const bool segment_end = opt.stop_at > 0 && done == opt.stop_at && done != opt.steps;
        if (stop || segment_end) {
            if (checkpoints.save(done, skips.in_a_row() > 0) && root)
                std::printf("%s: checkpointed step %lld in %s; continue with --train.resume latest\n",
                            stop ? "preemption signal" : "train.stop_at reached", (long long)done, opt.out_dir.c_str());
            return 0;
        }
    }
    // (A resume at the last step has that checkpoint already: only the evaluation is missing.)
    const bool saved = start_step == opt.steps || checkpoints.save(opt.steps, skips.in_a_row() > 0);
    run_eval(opt.steps);
    if (root && saved) mark_finished(opt.out_dir, opt.steps, checkpoint_name(opt.steps));
    if (root) {
        const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
        std::printf("done: %lld steps in %.1f s, checkpoint %s\n", (long long)(opt.steps - start_step), total,
                    saved ? checkpoints.last().c_str() : "none (parameters not finite)");
    }
    return saved ? 0 : 1;
}

}  // namespace curaclip
