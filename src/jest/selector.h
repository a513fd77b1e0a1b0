// JestSelector: one object per run that turns a scored super-batch into the
// selected sub-batch (docs/architecture.md §Data flow of one training step, docs/jest.md §One JEST step). The trainer's step with JEST on:
//
//   io::Batch super = loader.next();                   // this rank's B/P examples
//   ... learner (and reference, or cached /ref_emb) forward, no grad, normalized
//       embeddings [B/P, D] on the backend ...
//   jest::Selection sel = selector.select(inputs, step);   // collective
//   io::Batch mine = exchange_selected(super, sel.indices, B, comm);  // b/P examples
//   ... train on `mine`; log sel.batch_score, sel.mean_self_score ...
//
// Ranks: the Collectives (embedding all-gather on the backend) and the
// Communicator (the sampler's host messages) must span the same ranks in the
// same order; comm == nullptr with single-process collectives for one process.
#pragma once

#include <cstdint>

#include "jest/config.h"
#include "jest/learnability.h"
#include "jest/sampler.h"

namespace curaclip::jest {

class JestSelector {
public:
    // super_batch B (all ranks), embed_dim D. cfg is validated here (clear errors).
    // tile_rows: LearnabilityMatrix's row tile (0: automatic; tests force small ones).
    JestSelector(Backend& backend, Collectives& coll, const Communicator* comm, const JestConfig& cfg,
                 int64_t super_batch, int64_t embed_dim, int64_t tile_rows = 0);

    // Collective. Scores this rank's row block and selects b of the B examples:
    // global super-batch positions in selection (chunk) order, identical on every
    // rank, plus the batch's scores for logging. step keys the Gumbel noise, so a
    // resumed run selects exactly what the original run selected.
    Selection select(const ScoringInputs& in, uint64_t step);

    // Convenience with the argument list spelled out (ref_* may be empty tensors for
    // hard_learner; learner_* for easy_reference; biases for the softmax loss).
    Selection select(Tensor learner_img, Tensor learner_txt, Tensor ref_img, Tensor ref_txt,
                     Tensor learner_scale, Tensor learner_bias, Tensor ref_scale, Tensor ref_bias,
                     uint64_t step) {
        return select(ScoringInputs{learner_img, learner_txt, ref_img, ref_txt, learner_scale,
                                    learner_bias, ref_scale, ref_bias},
                      step);
    }

    int64_t super_batch() const { return sampler_.super_batch(); }
    int64_t selected_batch() const { return sampler_.selected_batch(); }
    const JestConfig& config() const { return sampler_.config(); }
    // The host row block of the last select() (for inspection and tests).
    const ScoreBlock& last_block() const { return block_; }
    size_t workspace_bytes() const { return matrix_.workspace_bytes(); }

private:
    Sampler sampler_;
    LearnabilityMatrix matrix_;
    ScoreBlock block_;
};

}  // namespace curaclip::jest
