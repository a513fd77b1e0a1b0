// The JEST sampler (docs/jest.md §One JEST step; Evans et al. 2024, Algorithm 1 with its pseudo-code
// defects fixed), its baselines, and the gathered and sharded distributions.
//
// JOINT SAMPLING. b = selected batch, N chunks of b/N. With S the selected set:
//   chunk 1 from the self scores s(c|∅);
//   chunks 2..N from the conditional scores s(c|S) of the not yet selected c;
//   each chunk drawn WITHOUT replacement with probability ∝ exp(s/τ), i.e.
//   Gumbel-top-k: key_c = s(c|S)/τ + G_c, G_c standard Gumbel, take the b/N
//   largest keys (ties: the smaller index), in decreasing key order (the
//   order of the equivalent sequential draws).
// Scores:
//   sigmoid loss: s(c|S) = L[c,c] + Σ_{k∈S} L[k,c] + Σ_{k∈S} L[c,k];  s(c|∅) = L[c,c].
//   softmax loss (paper A.6): per model, the loss of c in the batch S+c,
//     ℓ(c|S) = -l[c,c] + ½ (LSE_{k∈S+c} l[c,k] + LSE_{k∈S+c} l[k,c])  (l = logits),
//     combined as the score kind says (learner - reference, learner, -reference).
//     With S = ∅ that loss is 0 for every c, so s(c|∅) is taken over the whole
//     super-batch instead (S = all B: c's loss in the super-batch), which is also
//     what the independent baselines of the softmax variant rank by.
// Baselines through the same code: uniform (Gumbel-top-b of zero scores: a
// uniformly random b-subset), independent_topk (the b largest s(c|∅)),
// independent_sampled (Gumbel-top-b of s(c|∅)/τ).
//
// RANDOMNESS. G_c of chunk j is drawn from block j*B + c of the stream
// Philox(seed, RngPurpose::jest, step): a pure function of (seed, step, j, c),
// the same on every rank, so all ranks draw the same chunks with no messages.
//
// DISTRIBUTION. Rank r of P holds the row block [r*B/P, (r+1)*B/P) of the score
// matrices (jest/learnability.h).
//   gathered: the row blocks are all-gathered (MPI_Allgather, B^2 floats) and
//     every rank runs the sampler on the whole matrix, no further messages.
//   sharded: per chunk, rank r computes, for the new chunk K, its partial row sums
//     (c its rows: Σ_{k∈K} L[c,k]) and column sums (all c: Σ_{k∈K, k its rows}
//     L[k,c]); ONE all-reduce of a length-B vector gives everyone the update of
//     s(·|S). The diagonal is all-gathered once. Softmax: per chunk one max- and
//     one sum-all-reduce of the column terms (length B per model) and an
//     all-gather of the owners' row log-sum-exps.
//
// DETERMINISM (the two modes, and any P, pick EXACTLY the same indices). The
// conditional scores are sums whose order differs between the modes (gathered:
// one sequential pass; sharded: per-rank partial sums combined by MPI in an
// order of its choosing), and floating-point addition is not associative, so
// float sums -- float64 included -- may differ in the last bit, and rounding them
// to float32 afterwards only makes a flip unlikely, not impossible (a float64 sum
// that lies within an ulp of a float32 rounding boundary rounds either way). We
// make the sums EXACT instead: every score term is converted, element by element,
// to a 64-bit fixed-point integer q(x) = round(x * 2^F) before it is added.
// Integer addition is associative, so Σ q(.) is the same integer whatever the
// order, the partition over ranks or the reduction tree (MPI_SUM on int64 is
// exact). F is chosen so no sum can overflow: for the sigmoid loss from the
// global max |L| (an all-reduce MAX, also exact) and b, F = min(40, floor(log2(
// 2^62 / ((2b+1) max|L|))), 50 - ceil(log2 max|L|)) (the last keeps every term
// below 2^50, where the vectorized conversion is exact); quantization error <=
// 2^-(F+1) per term, ~1e-12 at typical magnitudes, far below the float32
// precision of L itself. Softmax:
// log-sum-exps are kept as (max m, Σ q(exp(l - m))): the max is an exact
// all-reduce, the term for the max itself is q(1) = 2^F, so the relative error
// of a sum is <= |S| 2^-(F+1) with F = min(50, 61 - ceil(log2(B+1))); when a
// new chunk raises m, the integer sum is rescaled by exp(m_old - m_new) on every
// rank from identical bits. Everything after the exact sums (the score from the
// integers, /τ, + Gumbel, the comparison) is the same double arithmetic on the
// same bits on every rank (one binary; C++ standard mode, so no FMA contraction).
// Hence: identical scores => identical keys => identical chunks, in both modes
// and for every P, given identical score matrices (rank r's row block is the
// same numbers a single process computes for those rows; see learnability.h).
// The conversion q is x * 2^F + 1.5*2^52 read back as an integer (round to
// nearest even, the same as llrint, for |x 2^F| < 2^51), so it vectorizes; exp
// in the softmax state is cpu::fast_exp_f64 (~1 ulp, the same bits everywhere).
//
// COST (B = 16,384, b = 3,280, N = 16). Sigmoid: one pass over the rows of each
// chunk (column part, vectorized) and a gather of the chunk's columns from each
// owned row (row part): O(b B) conversions in all; the last chunk (and the
// baselines' batch score) only updates the selected items, O(b^2). The block's
// max|L| and finiteness come with it from LearnabilityMatrix (no B^2 scan).
// Softmax: s(c|∅) needs each c's loss in the whole super-batch: one pass for
// the row/column maxima and one for the sums (2 B^2 vectorized exps per model),
// once per step; then per chunk O(|K| B) exps. Every O(B) and larger buffer is
// kept in the Sampler and reused (no allocation, no fresh pages per step).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/philox.h"
#include "jest/config.h"
#include "jest/learnability.h"
#include "mpi/communicator.h"

namespace curaclip::jest {

namespace detail {
struct SamplerWorkspace;  // sampler.cpp: the score states and O(B) buffers, kept across calls
}

struct Selection {
    // b global super-batch positions, in selection order (chunk by chunk; within a
    // chunk by decreasing key). The same on every rank.
    std::vector<int64_t> indices;
    // The score of the chosen batch as a whole: sigmoid (1/b) Σ_{i,j∈S} L[i,j] (for
    // learnability: learner loss - reference loss on the batch, SigLIP normalization);
    // softmax (1/b) Σ_{c∈S} ℓ-score of c in the batch S.
    double batch_score = 0.0;
    double mean_self_score = 0.0;        // (1/b) Σ_{c∈S} s(c|∅)
    double superbatch_self_score = 0.0;  // (1/B) Σ_c s(c|∅), for comparison
};

class Sampler {
public:
    // cfg validated against (B, P); comm == nullptr: one process (P = 1). comm must
    // outlive the sampler.
    Sampler(const JestConfig& cfg, int64_t super_batch, const Communicator* comm);
    ~Sampler();
    Sampler(Sampler&&) noexcept;
    Sampler& operator=(Sampler&&) noexcept;

    // Collective over comm (every rank calls it with its own row block and the same
    // step). Throws (on every rank alike) when a score is not finite.
    Selection select(const ScoreBlock& block, uint64_t step);

    int64_t super_batch() const { return B_; }
    int64_t selected_batch() const { return b_; }
    const JestConfig& config() const { return cfg_; }

private:
    JestConfig cfg_;
    int64_t B_, b_;
    const Communicator* comm_;
    int P_ = 1, rank_ = 0;
    ScoreBlock full_;  // gathered mode with P > 1: the whole matrices
    std::unique_ptr<detail::SamplerWorkspace> ws_;
};

// ---- building blocks (exposed for the tests) -----------------------------------------------
// Standard Gumbel noise of block `index` of the stream.
double gumbel_at(const Philox& rng, uint64_t index);
// The k largest keys[c] = scores[c]/tau + (noise ? gumbel_at(rng, offset + c) : 0) among the
// c with excluded[c] == 0 (excluded may be empty), in decreasing key order, ties to the
// smaller index.
std::vector<int64_t> gumbel_top_k(const std::vector<double>& scores,
                                  const std::vector<uint8_t>& excluded, int64_t k, double tau,
                                  const Philox& rng, uint64_t offset, bool noise = true);
// Single process: the conditional scores s(c|S) of every c for a whole-matrix block
// (row_begin 0, rows B), computed with the sampler's exact arithmetic. S empty: s(c|∅).
std::vector<double> conditional_scores(const ScoreBlock& full, const std::vector<int64_t>& S);

}  // namespace curaclip::jest
