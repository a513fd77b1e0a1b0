// One JEST training step (docs/architecture.md §Data flow of one training step, docs/jest.md §One JEST step): score this rank's share of the
// super-batch with the learner (no gradient; full or FlexiViT low resolution)
// and the reference (cached embeddings or a live forward), select b of the B
// examples jointly (identical on every rank), move the selected examples to
// their training ranks (all-to-all), and train on them. Scores use the logit
// scales capped at ln 100 as the losses do (src/loss/contrastive_loss.h), for the
// learner and the reference alike.
#pragma once

#include "backend/arena.h"
#include "io/loader.h"
#include "jest/reference.h"
#include "jest/selector.h"
#include "train/train_step.h"

namespace curaclip {

struct JestStepResult {
    StepResult train;
    double batch_score = 0.0;       // mean learnability (score) of the chosen batch
    double superbatch_score = 0.0;  // the same over the whole super-batch
    double corrupted_share = 0.0;   // share of selected pairs whose caption was corrupted (-1: unknown)
    double flops = 0.0;             // this step's model FLOPs, scoring included (all ranks)
};

class JestTrainStep {
public:
    // model: laid out for at least the super-batch share; step: the training step
    // at the selected batch share; reference may be null for score = hard_learner.
    JestTrainStep(ClipModel& model, TrainStep& step, jest::JestSelector& selector, jest::ReferenceSource* reference,
                  const Communicator& comm, bool score_low_res);

    JestStepResult run(const io::Batch& super, AdamW& opt, uint64_t step);

private:
    ClipModel& model_;
    TrainStep& step_;
    jest::JestSelector& selector_;
    jest::ReferenceSource* reference_;
    const Communicator& comm_;
    bool low_res_;
    Arena scratch_;       // the two scalars below
    Tensor learner_cap_;  // [1] ln 100 for a learner logit_scale above it (the losses' cap)
    Tensor reference_cap_;
};

}  // namespace curaclip
