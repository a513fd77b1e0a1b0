// Everything one training step touches, built in the order it depends on: the
// backend (its device bound to this rank first), the model and its arenas, the
// collectives the backend registered (NCCL for cuda, MPI otherwise), the loss, the
// data-parallel step, AdamW, and with JEST the selector, the reference model or its
// cached embeddings, and the JEST step. Then the state a run starts from: fresh
// weights, train.init_from's parameters, or (a resume) the run's checkpoint with its
// moments, optimizer step and loader position.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "jest/reference.h"
#include "jest/selector.h"
#include "loss/contrastive_loss.h"
#include "model/clip_model.h"
#include "mpi/collectives.h"
#include "mpi/communicator.h"
#include "optim/adamw.h"
#include "train/jest_step.h"
#include "train/run_inputs.h"
#include "train/run_start.h"
#include "train/train_step.h"

namespace curaclip {

struct TrainingSetup {
    // Collective (NCCL/MPI set-up). The model has fresh weights (train.seed).
    TrainingSetup(const TrainOptions& opt, const ModelConfig& model_cfg, RunInputs& in, const Communicator& comm);

    // train.init_from (its parameters; with train.init_optimizer its moments and their
    // step count too), then a resume: parameters, moments, optimizer step, moment step
    // offset and loader position. Returns the first step to run (0 unless resuming); prints on root.
    int64_t restore(const RunStart& start, const RunInputs& in, bool root);
    // Root's summary before step 1: the model and its memory, ranks and batches, the
    // rows trained on (a MoDE expert's share), JEST's configuration.
    void print_summary(const TrainOptions& opt, const RunInputs& in, int ranks) const;

    std::unique_ptr<Backend> backend;
    std::unique_ptr<ClipModel> model;
    std::unique_ptr<Collectives> collectives;
    std::unique_ptr<ContrastiveLoss> loss;
    std::unique_ptr<TrainStep> step;
    std::unique_ptr<AdamW> adamw;
    // JEST only (train with jest.*): null otherwise; reference is null for the
    // learner-only score.
    std::unique_ptr<jest::JestSelector> selector;
    std::unique_ptr<jest::ReferenceSource> reference;
    std::unique_ptr<JestTrainStep> jest_step;

private:
    io::Loader* loader_;
    bool init_optimizer_;
};

}  // namespace curaclip
