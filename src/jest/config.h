// JEST configuration (docs/jest.md §Options): what to select, how many, and how.
//
// Notation: super-batch B (all ranks together), selected batch b, filter ratio
// f = 1 - b/B, N chunks of b/N, P ranks. Strings are what the command line and
// the INI files take (`--jest.method joint`, ...).
#pragma once

#include <cstdint>
#include <string>

#include "loss/contrastive_loss.h"

namespace curaclip::jest {

// The per-pair score matrix L (rows images, columns texts).
enum class ScoreKind {
    learnability,    // L = NLL_learner - NLL_reference  ("learnability")
    hard_learner,    // L = NLL_learner                  ("hard_learner", alias "hard")
    easy_reference,  // L = -NLL_reference               ("easy_reference", alias "easy")
};
// Where the score matrix lives while the sampler runs.
enum class SelectMode {
    gathered,  // every rank holds all of L [B,B] (memory B^2)
    sharded,   // each rank keeps its row block [B/P, B]; one all-reduce per chunk
};
enum class SelectMethod {
    joint,                // the chunked joint sampler (Algorithm 1)
    independent_topk,     // the b largest L[c,c]
    independent_sampled,  // b drawn without replacement ∝ exp(L[c,c]/τ)
    uniform,              // b uniformly at random (no selection)
};

ScoreKind parse_score_kind(const std::string& s);
SelectMode parse_select_mode(const std::string& s);
SelectMethod parse_select_method(const std::string& s);
const char* score_kind_name(ScoreKind k);
const char* select_mode_name(SelectMode m);
const char* select_method_name(SelectMethod m);

struct JestConfig {
    double filter_ratio = 0.8;  // f in [0, 1); used when batch == 0
    int64_t batch = 0;          // b; 0: b = round((1 - f) B)
    int chunks = 16;            // N
    double temperature = 1.0;   // τ > 0 (sampling ∝ exp(score / τ))
    ScoreKind score = ScoreKind::learnability;
    SelectMode mode = SelectMode::gathered;
    SelectMethod method = SelectMethod::joint;
    LossKind loss = LossKind::sigmoid;  // the loss whose per-pair terms make L
    uint64_t seed = 0;                  // Gumbel noise: Philox(seed, jest, step)

    // b for a super-batch of B (after validate(), a multiple of N and P).
    int64_t selected_batch(int64_t super_batch) const;
    // Throws an Error naming the bad value and what would be valid: f outside
    // [0,1), b outside [1,B], b not divisible by N or P, B not divisible by P
    // (never rounded: the same options select the same way on any rank count),
    // N < 1, τ <= 0 or not finite.
    void validate(int64_t super_batch, int ranks) const;
    std::string str() const;  // one line, for logs
};

// The super-batch of a selected batch b at filter ratio f: B = round(b / (1 - f)),
// the same on any number of ranks (validate() then refuses a B that the ranks do
// not divide). Throws an Error for b < 1 or f outside (0, 1).
int64_t super_batch_for(int64_t b, double f);

}  // namespace curaclip::jest
