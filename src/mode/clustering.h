// MoDE two-stage clustering (docs/mode.md §k-means): fine k-means with m centers on a random
// sample of the caption embeddings, coarse k-means of the m fine centers into n
// experts, then every example goes to its nearest fine center and hence to that
// center's expert. Distributed over the ranks of a communicator; every rank ends
// with the same centers, and the assignment of its own contiguous block of the
// examples (rows [begin, end)).
//
// Determinism: the sample is a function of (N, sample size, seed); the k-means
// runs are rank-count invariant (mode/kmeans.h); so the whole result is the same
// for any number of ranks.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "mode/kmeans.h"
#include "mpi/communicator.h"

namespace curaclip::mode {

// Where the embeddings come from: N rows of dim floats, read by row ranges.
struct EmbeddingSource {
    int64_t n = 0, dim = 0;
    std::function<void(int64_t start, int64_t count, float* out)> read;  // rows [start, start+count)
};
// Rows held in memory (every rank holds all of them; tests).
EmbeddingSource memory_source(const float* x, int64_t n, int64_t dim);

struct ClusterOptions {
    int64_t fine = 1024;       // m: fine centers
    int64_t experts = 4;       // n: coarse clusters = experts
    int64_t sample = 0;        // points of the fine k-means (0: all)
    int iters = 20;            // Lloyd iterations of the fine k-means
    int coarse_iters = 50;     // ... of the coarse k-means
    KMeansInit init = KMeansInit::kmeanspp;
    bool balanced = false;         // balanced fine clusters
    bool coarse_balanced = false;  // balanced coarse clusters (experts of equal fine-center count)
    bool normalize = true;     // L2-normalize the embeddings as they are read
    uint64_t seed = 0;
    int64_t chunk_rows = 65536;  // rows per read in the assignment pass
    int64_t block_rows = 1024;   // rows per GEMM block
    // Called on every rank: stage "fine" or "coarse", and the iteration.
    std::function<void(const std::string& stage, const KMeansIteration&)> on_iteration;
};

struct ClusterResult {
    int64_t n = 0, dim = 0, m = 0, n_experts = 0, sample = 0;
    std::vector<float> fine_centers;      // [m, dim]
    std::vector<float> coarse_centers;    // [n_experts, dim]
    std::vector<int32_t> fine_to_expert;  // [m]
    int64_t begin = 0, end = 0;           // this rank's examples
    std::vector<int32_t> fine, expert;    // [end - begin]
    std::vector<int64_t> fine_sizes, expert_sizes;  // over all N examples
    double fine_inertia = 0, coarse_inertia = 0, assign_inertia = 0;
};

// Collective. Throws (on every rank alike) for impossible settings: m > sample,
// experts > m, empty data.
ClusterResult cluster_two_stage(Backend& be, const Communicator& comm, const EmbeddingSource& src,
                                const ClusterOptions& opt);

// The sorted sample of s distinct indices of [0, n) (all of them when s <= 0 or s >= n).
std::vector<int64_t> sample_indices(int64_t n, int64_t s, uint64_t seed);
// Rows [begin, end) of rank r of p: an even split, the first n % p ranks one row more.
std::pair<int64_t, int64_t> block_of(int64_t n, int rank, int size);

}  // namespace curaclip::mode
