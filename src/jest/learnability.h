// JEST scoring: this rank's row block of the score matrix (docs/jest.md §One JEST step).
//
// P ranks each hold Bl = B/P examples of the super-batch (global rows
// [r*Bl, (r+1)*Bl), the loader's slice) and their L2-normalized embeddings
// [Bl, D] from the learner and the reference model. Texts are all-gathered
// (B x D, small); rank r computes its images against all texts:
//
//  sigmoid loss (SigLIP): NLL[i,j] = -log sigmoid(z_ij (exp(t) img_i·txt_j + b)) per model
//    (CurationOps::pairwise_sigmoid_nll), combined on the device into
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
// COST (CPU, B = 16,384): the block is computed in row tiles of ~1M elements (GEMM ->
// pairwise NLL -> difference -> download -> max|x| and finiteness), so each tile stays in
// cache between the steps and the workspace is two tiles, not two [Bl, B] blocks; the
// sampler then reads the block's max|x| and finiteness from ScoreBlock instead of
// scanning B^2 values again. On a GPU backend the tile is the whole block.
//
// The row block of rank r is exactly the rows [r*Bl, (r+1)*Bl) of the matrix a single
// process computes on the whole super-batch (each element depends only on its image
// and text embeddings; the GEMM's per-element sum over D is the same for any M as far
// as the BLAS is concerned, and the tests use embeddings whose dots are exact).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "backend/arena.h"
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

    // Optional transposes [B, rows] of the matrices above, XT[j * rows + i] = X[i * B + j]
    // (column j of the row block, contiguous), written by LearnabilityMatrix::compute from
    // the tile in cache. With them the sampler reads the chunk's columns as rows instead
    // of gathering one float per cache line from every row. Empty: the sampler gathers.
    std::vector<float> LT, learnerT, referenceT;
    // Filled by LearnabilityMatrix::compute in its tile pass: the largest |x| over the
    // block's matrices and whether every value is finite. stats_valid == false (the
    // default: a block made by hand, or edited after compute) makes the sampler scan.
    bool stats_valid = false;
    double max_abs = 0.0;
    bool all_finite = true;

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

// max over p[0, n) of the bit pattern of |p[i]| (int order = float order for |x|): a value
// >= 0x7f800000 means an Inf or NaN is present; otherwise bit_cast<float> of it is max|x|.
// Vectorized and threaded (n > 2^16).
uint32_t max_abs_bits(const float* p, int64_t n);

class LearnabilityMatrix {
public:
    // local_batch Bl >= 1, embed_dim D >= 1; B = Bl * coll.size(). Workspace on the
    // backend: gathered texts [B, D] of each model and two [T, B] tiles (T = Bl off the
    // CPU; on the CPU about 2^20 / B rows). backend and coll must
    // outlive the object.
    // tile_rows: rows per tile (0: automatic, see above; tests force small tiles).
    LearnabilityMatrix(Backend& backend, Collectives& coll, LossKind loss, ScoreKind kind,
                       int64_t local_batch, int64_t embed_dim, int64_t tile_rows = 0);

    // Collective (all-gathers texts). Fills out (resized; its buffers are reused).
    void compute(const ScoringInputs& in, ScoreBlock& out);

    int64_t local_batch() const { return Bl_; }
    int64_t tile_rows() const { return T_; }
    int64_t super_batch() const { return B_; }
    size_t workspace_bytes() const { return arena_.capacity(); }

private:
    void layout(Arena& a);
    // dots/logits of rows [r0, r0 + out.rows) of one model into `out` [rows, B]; sigmoid:
    // the NLL matrix. txt_all: that model's gathered texts.
    void model_tile(Tensor img, Tensor txt_all, Tensor scale, Tensor bias, int64_t r0, Tensor out);

    Backend& be_;
    Collectives& coll_;
    LossKind loss_;
    ScoreKind kind_;
    int64_t Bl_, B_, D_, T_ = 1;
    Arena arena_;
    Tensor txt_l_, txt_r_, a_, b_;
};

}  // namespace curaclip::jest
