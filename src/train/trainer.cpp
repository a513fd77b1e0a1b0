#include "train/trainer.h"

#include <omp.h>
#include <cblas.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "backend/registry.h"
#include "eval/evaluate.h"
#include "io/dataset_reader.h"
#include "io/loader.h"
#include "loss/contrastive_loss.h"
#include "model/checkpoint.h"
#include "model/clip_model.h"
#include "mpi/collectives.h"
#include "tokenizer/bpe_tokenizer.h"
#include "train/jest_step.h"
#include "train/preemption.h"
#include "train/run_folder.h"
#include "train/run_inputs.h"
#include "train/run_start.h"
#include "train/step_log.h"
#include "train/train_step.h"

namespace fs = std::filesystem;

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

    // ---- fresh, resumed, or nothing to do (run_start.h) ----
    const RunStart start = plan_run_start(opt, model_cfg, comm);
    if (start.nothing_to_do) return 0;
    const bool resuming = !start.resume_path.empty();

    // ---- inputs, checked before anything is written (run_inputs.h) ----
    RunInputs in = check_run_inputs(opt, model_cfg, start, comm);
    const BpeTokenizer& tok = in.tok;
    io::Loader& loader = *in.loader;
    const io::LoaderOptions& lo = in.loader_options;
    const int64_t super_batch = in.super_batch, local_batch = in.local_batch;

    // ---- model, loss, step, optimizer: the backend's own device binding and
    // collectives where it registered them (cuda/: one GPU per node-local rank, NCCL),
    // MPI otherwise (mpi/collectives.h) ----
    bind_device_for_backend(opt.backend, comm);
    auto be = make_backend(opt.backend);
    ClipModel model(*be, model_cfg, super_batch / P);
    model.init_weights(opt.seed);
    model.set_batch(local_batch);
    auto coll = make_collectives(comm, *be);
    ContrastiveLoss loss(*be, model_cfg.sigmoid_loss ? LossKind::sigmoid : LossKind::softmax, local_batch,
                         model_cfg.embed_dim, *coll);
    TrainStep step(model, loss, *coll, size_t(opt.grad_bucket_mb * double(1 << 20)));
    AdamW adamw(model.params(), opt.optim);
    std::unique_ptr<jest::JestSelector> selector;
    std::unique_ptr<jest::ReferenceSource> reference;
    std::unique_ptr<JestTrainStep> jest_step;
    if (opt.jest_enabled) {
        selector = std::make_unique<jest::JestSelector>(*be, *coll, P > 1 ? &comm : nullptr, in.jest, super_batch,
                                                        model_cfg.embed_dim);
        if (opt.jest.score != jest::ScoreKind::hard_learner)
            reference = std::make_unique<jest::ReferenceSource>(*be, in.jest_reference, opt.jest_reference_cache,
                                                                super_batch / P, loader.dataset_size(), model_cfg,
                                                                tok.vocab_size());
        jest_step = std::make_unique<JestTrainStep>(model, step, *selector, reference.get(), comm, opt.jest_score_low_res);
    }

    int64_t start_step = 0;
    std::string last_checkpoint;  // the newest checkpoint of this run folder that this process knows of
    if (!in.init_path.empty()) {
        const std::string note = load_initial_parameters(in.init_path, model);
        if (root) {
            std::printf("initialized from %s (parameters only; fresh optimizer, step 0)\n", in.init_path.c_str());
            if (!note.empty()) std::printf("init_from: %s\n", note.c_str());
        }
    }
    if (resuming) {
        const CheckpointState st = load_checkpoint(start.resume_path, model.params(), /*with_optimizer=*/true);
        adamw.set_steps_done(st.step);
        loader.seek({st.loader_epoch, st.loader_step});
        start_step = st.step;
        last_checkpoint = start.resume_path;
        if (root) std::printf("resumed from %s at step %lld\n", start.resume_path.c_str(), (long long)st.step);
    }
    if (root) {
        write_run_record(start, opt, start_step, adamw);
        std::printf("%s\nranks %d x local batch %lld = global batch %lld, %lld steps, backend %s, %d threads/rank\n",
                    model.memory_report().c_str(), P, (long long)local_batch, (long long)opt.global_batch,
                    (long long)opt.steps, be->name().c_str(), omp_get_max_threads());
        if (!lo.rows.empty())
            std::printf("training on %lld of %lld rows (%.1f%%)%s, %lld steps per epoch\n", (long long)lo.rows.size(),
                        (long long)loader.dataset_size(), 100.0 * double(lo.rows.size()) / double(loader.dataset_size()),
                        opt.mode_expert >= 0 ? (" = MoDE expert " + std::to_string(opt.mode_expert) + " of " +
                                                opt.mode_assign).c_str() : "",
                        (long long)loader.steps_per_epoch());
        if (opt.jest_enabled)
            std::printf("JEST: %s; super-batch %lld -> %lld, reference %s\n", in.jest.str().c_str(),
                        (long long)super_batch, (long long)opt.global_batch,
                        reference ? (reference->live() ? "live forward" : "cached embeddings") : "none");
        std::fflush(stdout);
    }

    install_preemption_handlers();
    // A rank that stops without dying would leave the others waiting for ever in a
    // collective: the watchdog ends the job with a report (preemption.h).
    start_progress_watchdog(opt.step_timeout);
    struct WatchdogStop {
        ~WatchdogStop() { stop_progress_watchdog(); }
    } watchdog_stop;
    // Checkpoints and evaluations have no step to note: the watchdog waits them out.
    struct WatchdogPause {
        WatchdogPause() { pause_progress_watchdog(true); }
        ~WatchdogPause() { pause_progress_watchdog(false); }
    };
    // Training again (train.overwrite, or a resume to more steps): not finished until the end.
    if (root) clear_finished(opt.out_dir);
    double total_flops = 0;   // model FLOPs of this run segment (scoring included), all ranks
    int64_t skip_streak = 0;  // steps skipped in a row (non-finite loss or gradients)
    int64_t skipped = 0;      // steps skipped in this segment
    // Returns whether a checkpoint was written. After skipped steps the parameters are
    // checked first: a non-finite state never becomes `latest`.
    auto checkpoint = [&](int64_t done) {
        const WatchdogPause pause;
        int64_t bad = 0;
        if (skip_streak > 0 && !parameters_finite(model.params())) bad = 1;
        comm.allreduce_max(&bad, 1);
        if (bad) {
            if (root)
                std::printf("step %lld: parameters are not finite: no checkpoint written (the last good one: %s)\n",
                            (long long)done, last_checkpoint.empty() ? "none" : last_checkpoint.c_str());
            return false;
        }
        if (root) {
            const io::LoaderPosition pos = loader.position();
            CheckpointState state;
            state.step = done;
            state.loader_epoch = pos.epoch;
            state.loader_step = pos.step;
            state.seed = opt.seed;
            state.config = opt.config_text;
            state.model_config = model_config_to_ini(model_cfg);
            state.tokenizer_id = tok.id_hex();
            state.train_rows = loader.dataset_size();
            state.train_fingerprint = in.train_fingerprint;
            save_checkpoint(opt.out_dir, checkpoint_name(done), model.params(), state);
        }
        comm.barrier();
        last_checkpoint = (fs::path(opt.out_dir) / checkpoint_name(done)).string();
        return true;
    };
    StepLog log(root, jest_step != nullptr, opt.global_batch, opt.steps,
                (fs::path(opt.out_dir) / "metrics.jsonl").string());
    auto run_eval = [&](int64_t done) {
        if (opt.eval_path.empty()) return;
        const WatchdogPause pause;
        const EvalReport r = evaluate(model, tok, opt.eval_path, comm);
        model.set_batch(local_batch);
        log.eval(done, total_flops, opt.eval_path, r);
    };

    // ---- the loop ----
    const auto t_start = std::chrono::steady_clock::now();
    for (int64_t s = start_step; s < opt.steps; ++s) {
        const auto t_step = std::chrono::steady_clock::now();
        const io::Batch batch = loader.next();
        if (opt.on_batch_rows) opt.on_batch_rows(s, batch.indices);
        StepResult r;
        if (jest_step) {  // score the super-batch, select, exchange, train (jest_step.h)
            const JestStepResult j = jest_step->run(batch, adamw, uint64_t(s));
            r = j.train;
            total_flops += j.flops;
            log.add(r, j.batch_score, j.superbatch_score, j.corrupted_share);
        } else {  // forward, backward, all-reduce, AdamW (train_step.h)
            r = step.run(batch.images.data(), batch.tokens.data(), adamw);
            total_flops += double(opt.global_batch) * step.train_flops_per_pair();
            double corrupted = 0;
            for (uint8_t c : batch.corrupted) corrupted += c;
            if (P > 1) comm.allreduce_sum(&corrupted, 1);
            log.add(r, 0, 0, corrupted / double(opt.global_batch));
        }
        // The loss and the gradient norm are global: every rank sees the same skip.
        if (r.skipped || !std::isfinite(r.loss)) {
            ++skipped;
            ++skip_streak;
            if (root) std::printf("step %lld: non-finite loss or gradients, update skipped\n", (long long)s + 1);
        } else {
            skip_streak = 0;
        }
        const int64_t done = s + 1;
        const bool stalled = opt.max_skipped_steps > 0 && skip_streak >= opt.max_skipped_steps;
        if (done % opt.log_every == 0 || done == opt.steps || stalled)
            log.report(done, adamw.last_lr(), r.grad_norm, batch.epoch, skipped, total_flops);
        if (stalled)
            CC_USER_FAIL("train: ", skip_streak, " steps in a row (", done - skip_streak + 1, "..", done,
                         ") had a non-finite loss or gradient norm and changed nothing (train.max_skipped_steps = ",
                         opt.max_skipped_steps, "); stopped without writing a checkpoint. The last good checkpoint: ",
                         last_checkpoint.empty() ? std::string("none (this run wrote none)") : last_checkpoint,
                         ". Look for the cause in the inputs and options (a too large train.lr, bad "
                         "model.image_mean / image_std, a damaged init_from or data file); train.max_skipped_steps 0 "
                         "never stops");
        note_progress(done, std::chrono::duration<double>(std::chrono::steady_clock::now() - t_step).count());
        if (opt.checkpoint_every > 0 && done % opt.checkpoint_every == 0 && done != opt.steps) {
            // Not while steps are being skipped: `latest` stays the last checkpoint
            // written before them (the state has not changed since, the data position has).
            if (skip_streak == 0) checkpoint(done);
            else if (root)
                std::printf("step %lld: no checkpoint while steps are skipped (latest stays %s)\n", (long long)done,
                            last_checkpoint.empty() ? "none" : last_checkpoint.c_str());
        }
        if (opt.eval_every > 0 && done % opt.eval_every == 0 && done != opt.steps) run_eval(done);
        // Every rank agrees whether any rank was asked to stop.
        int64_t stop = preemption_requested() ? 1 : 0;
        comm.allreduce_max(&stop, 1);
        const bool segment_end = opt.stop_at > 0 && done == opt.stop_at && done != opt.steps;
        if (stop || segment_end) {
            const bool saved = checkpoint(done);
            if (root && saved)
                std::printf("%s: checkpointed step %lld in %s; continue with --train.resume latest\n",
                            stop ? "preemption signal" : "train.stop_at reached", (long long)done, opt.out_dir.c_str());
            return 0;
        }
    }
    // (A resume at the last step has that checkpoint already: only the evaluation is missing.)
    const bool saved = start_step == opt.steps ? true : checkpoint(opt.steps);
    run_eval(opt.steps);
    if (root && saved) mark_finished(opt.out_dir, opt.steps, checkpoint_name(opt.steps));
    if (root) {
        const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
        std::printf("done: %lld steps in %.1f s, checkpoint %s\n", (long long)(opt.steps - start_step), total,
                    saved ? last_checkpoint.c_str() : "none (parameters not finite)");
    }
    return saved ? 0 : 1;
}

}  // namespace curaclip
