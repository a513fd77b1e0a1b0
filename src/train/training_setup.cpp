#include "train/training_setup.h"

#include <omp.h>

#include <cstdio>

#include "backend/registry.h"
#include "model/checkpoint.h"

namespace curaclip {

TrainingSetup::TrainingSetup(const TrainOptions& opt, const ModelConfig& model_cfg, RunInputs& in,
                             const Communicator& comm)
    : loader_(in.loader.get()), init_optimizer_(opt.init_optimizer) {
    const int P = comm.size();
    // The backend's own device binding where it registered one (cuda/: one GPU per
    // node-local rank), before the backend exists (mpi/collectives.h).
    bind_device_for_backend(opt.backend, comm);
    backend = make_backend(opt.backend);
    model = std::make_unique<ClipModel>(*backend, model_cfg, in.super_batch / P);
    model->init_weights(opt.seed);
    model->set_batch(in.local_batch);
    collectives = make_collectives(comm, *backend);
    loss = std::make_unique<ContrastiveLoss>(*backend, model_cfg.sigmoid_loss ? LossKind::sigmoid : LossKind::softmax,
                                             in.local_batch, model_cfg.embed_dim, *collectives);
    step = std::make_unique<TrainStep>(*model, *loss, *collectives, size_t(opt.grad_bucket_mb * double(1 << 20)));
    adamw = std::make_unique<AdamW>(model->params(), opt.optim);
    if (!opt.jest_enabled) return;
    selector = std::make_unique<jest::JestSelector>(*backend, *collectives, P > 1 ? &comm : nullptr, in.jest,
                                                    in.super_batch, model_cfg.embed_dim);
    if (opt.jest.score != jest::ScoreKind::hard_learner)
        reference = std::make_unique<jest::ReferenceSource>(*backend, in.jest_reference, opt.jest_reference_cache,
                                                            in.super_batch / P, in.loader->dataset_size(), model_cfg,
                                                            in.tok.vocab_size());
    jest_step = std::make_unique<JestTrainStep>(*model, *step, *selector, reference.get(), comm, opt.jest_score_low_res);
}

int64_t TrainingSetup::restore(const RunStart& start, const RunInputs& in, bool root) {
    if (!in.init_path.empty() && init_optimizer_) {
        adamw->set_moment_step_offset(load_initial_optimizer(in.init_path, *model));
        if (root)
            std::printf("initialized from %s (parameters and AdamW moments, whose bias correction continues from "
                        "their step %lld; this run's schedule from step 0)\n",
                        in.init_path.c_str(), (long long)adamw->moment_step_offset());
    } else if (!in.init_path.empty()) {
        const std::string note = load_initial_parameters(in.init_path, *model);
        if (root) {
            std::printf("initialized from %s (parameters only; fresh optimizer, step 0)\n", in.init_path.c_str());
            if (!note.empty()) std::printf("init_from: %s\n", note.c_str());
        }
    }
    if (start.resume_path.empty()) return 0;
    const CheckpointState st = load_checkpoint(start.resume_path, model->params(), /*with_optimizer=*/true);
    adamw->set_steps_done(st.step);
    adamw->set_moment_step_offset(st.adam_step_offset);
    loader_->seek({st.loader_epoch, st.loader_step});
    if (root) std::printf("resumed from %s at step %lld\n", start.resume_path.c_str(), (long long)st.step);
    return st.step;
}

void TrainingSetup::print_summary(const TrainOptions& opt, const RunInputs& in, int ranks) const {
    const io::Loader& loader = *in.loader;
    const io::LoaderOptions& lo = in.loader_options;
    std::printf("%s\nranks %d x local batch %lld = global batch %lld, %lld steps, backend %s, %d threads/rank\n",
                model->memory_report().c_str(), ranks, (long long)in.local_batch, (long long)opt.global_batch,
                (long long)opt.steps, backend->name().c_str(), omp_get_max_threads());
    if (!lo.rows.empty())
        std::printf("training on %lld of %lld rows (%.1f%%)%s, %lld steps per epoch\n", (long long)lo.rows.size(),
                    (long long)loader.dataset_size(), 100.0 * double(lo.rows.size()) / double(loader.dataset_size()),
                    opt.mode_expert >= 0 ? (" = MoDE expert " + std::to_string(opt.mode_expert) + " of " +
                                            opt.mode_assign).c_str() : "",
                    (long long)loader.steps_per_epoch());
    if (opt.jest_enabled)
        std::printf("JEST: %s; super-batch %lld -> %lld, reference %s\n", in.jest.str().c_str(),
                    (long long)in.super_batch, (long long)opt.global_batch,
                    reference ? (reference->live() ? "live forward" : "cached embeddings") : "none");
    std::fflush(stdout);
}

}  // namespace curaclip
