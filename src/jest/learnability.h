// JEST scoring: this rank's row block of the score matrix (DESIGN §6).
//
// P ranks each hold Bl = B/P examples of the super-batch (global rows
// [r*Bl, (r+1)*Bl), the loader's slice) and their L2-normalized embeddings
// [Bl, D] from the learner and the reference model. Texts are all-gathered
// (B x D, small); rank r computes its images against all texts:
//
//  sigmoid loss (SigLIP): NLL[i,j] = -log sigmoid(z_ij (exp(t) img_i·txt_j + b)) per model
//    (Backend::pairwise_sigmoid_nll), combined on the device into
//      learnability   L = NLL_learner - NLL_reference
//      hard_learner   L = NLL_learner
//      easy_reference L = -NLL_reference
//    and downloaded as ScoreBlock::L [Bl, B] (host f32).
//  softmax loss (CLIP): the conditional score of a candidate needs log-sum-exps over the
//    selected set (paper appendix A.6), which the sampler evaluates per chunk, so the
//    block holds the logits exp(t) img_i·txt_j of each model the score kind needs
//    (ScoreBlock::learner / ::reference [Bl, B], host f32). What each rank needs for the
//    conditional score of candidate c given S:
//      row  LSE_{k in S+c} l[c,k]: row c only, i.e. the rank that owns image c;
//      col  LSE_{k in S+c} l[k,c]: column c, spread over every rank's rows k in S;
//      the positive l[c,c] (the diagonal, gathered once).
//    The sampler reduces the column terms with one max- and one sum-all-reduce per chunk
//    and all-gathers the owners' row terms (jest/sampler.h).
//
// The row block of rank r is exactly the rows [r*Bl, (r+1)*Bl) of the matrix a single
// process computes on the whole super-batch (each element depends only on its image
// and text embeddings; the GEMM's per-element sum over D is the same for any M as far
// as the BLAS is concerned, and the tests use embeddings whose dots are exact).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "core/arena.h"
#include "jest/config.h"
#include "loss/contrastive_loss.h"
#include "mpi/collectives.h"

namespace curaclip::jest {

// A row block of the scores on the host: rows [row_begin, row_begin + rows) of the B x B
// matrix (rows images, columns texts).
struct ScoreBlock {
    LossKind loss = LossKind::sigmoid;
    ScoreKind kind = ScoreKind::learnability;
    int64_t B = 0, row_begin = 0, rows = 0;
    std::vector<float> L;          // sigmoid: [rows, B]
    std::vector<float> learner;    // softmax: learner logits [rows, B] (empty for easy_reference)
    std::vector<float> reference;  // softmax: reference logits [rows, B] (empty for hard_learner)

    bool uses_learner() const { return kind != ScoreKind::easy_reference; }
    bool uses_reference() const { return kind != ScoreKind::hard_learner; }
};

// The scoring inputs of one step, all on the backend, this rank's Bl rows. Tensors of a
// model the score kind does not use may be empty (e.g. no reference for hard_learner).
struct ScoringInputs {
    Tensor learner_img, learner_txt;  // [Bl, D], normalized
    Tensor ref_img, ref_txt;          // [Bl, D], normalized
    Tensor learner_scale, learner_bias;  // [1] each (bias: sigmoid only)
    Tensor ref_scale, ref_bias;          // [1] each (bias: sigmoid only)
};

class LearnabilityMatrix {
public:
    // local_batch Bl >= 1, embed_dim D >= 1; B = Bl * coll.size(). Workspace on the
    // backend: gathered texts [B, D] and two [Bl, B] blocks. backend and coll must
    // outlive the object.
    LearnabilityMatrix(Backend& backend, Collectives& coll, LossKind loss, ScoreKind kind,
                       int64_t local_batch, int64_t embed_dim);

    // Collective (all-gathers texts). Fills out (resized; its buffers are reused).
    void compute(const ScoringInputs& in, ScoreBlock& out);

    int64_t local_batch() const { return Bl_; }
    int64_t super_batch() const { return B_; }
    size_t workspace_bytes() const { return arena_.capacity(); }

private:
    void layout(Arena& a);
    // dots/logits of one model into `out` [Bl, B]; sigmoid: the NLL matrix.
    void model_block(Tensor img, Tensor txt, Tensor scale, Tensor bias, Tensor out);

    Backend& be_;
    Collectives& coll_;
    LossKind loss_;
    ScoreKind kind_;
    int64_t Bl_, B_, D_;
    Arena arena_;
    Tensor txt_all_, a_, b_;
};

}  // namespace curaclip::jest
