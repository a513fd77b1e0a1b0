// Distributed k-means for MoDE (docs/mode.md §k-means): each rank holds a block of the
// points, every rank ends with the same centers.
//
// ALGORITHM. Init (k-means++ or random, from a Philox stream shared by all
// ranks), then Lloyd iterations: every rank assigns its points to the nearest
// center (CurationOps::kmeans_assign, GEMM + argmin), one all-reduce of per-center
// sums and counts updates the centers. Empty clusters are re-seeded with the
// points farthest from their centers (global top-E, ties -> lower global index).
// Optionally the assignment is *balanced*: cluster sizes differ by at most one
// (see balanced_assign below).
//
// SAME RESULT FOR ANY NUMBER OF RANKS. Every quantity that decides something is
// reduced exactly, so no decision depends on how the points are split:
//  * per-center sums are int64 fixed-point sums of the coordinates (scale 2^e
//    chosen from the global max |x| and N so nothing overflows; quantization
//    below 2^-30 of the largest coordinate for N < 2^32), hence associative:
//    the centers are bitwise identical for 1, 2 or 4 ranks;
//  * counts are integers; k-means++ samples by an integer prefix sum of
//    quantized squared distances; the balanced assignment's prices are updated
//    from integer counts only;
//  * a point's distances depend only on the point and the centers (backend.h).
// Only the reported inertia is a float64 all-reduce (differs ~1e-16 relative).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "mpi/communicator.h"

namespace curaclip::mode {

enum class KMeansInit { kmeanspp, random };
KMeansInit parse_kmeans_init(const std::string& s);  // "kmeans++" | "random"
const char* kmeans_init_name(KMeansInit i);

// Statistics of one Lloyd iteration (the assignment to the current centers).
struct KMeansIteration {
    int iter = 0;                // 0-based; iter == iterations: the final assignment
    double inertia = 0.0;        // sum over all points of the squared distance
    int64_t changed = 0;         // points that changed center (iteration 0: every point)
    int64_t reseeded = 0;        // empty clusters re-seeded after this iteration
    std::vector<int64_t> sizes;  // points per center
};

struct KMeansOptions {
    int64_t k = 8;
    int iters = 20;               // Lloyd iterations (assign + update each)
    KMeansInit init = KMeansInit::kmeanspp;
    bool balanced = false;        // equal-size clusters (sizes differ by at most one)
    uint64_t seed = 0;
    uint64_t stream = 0;          // Philox step: separates runs sharing a seed (fine/coarse)
    bool stop_when_stable = true; // stop once no point changes center
    bool final_assignment = true; // assign once more to the final centers
    int64_t block_rows = 1024;    // rows per GEMM block of the assignment
    int balance_rounds = 40;      // price rounds of each balanced assignment
    // Called on every rank after each iteration (print on rank 0 only).
    std::function<void(const KMeansIteration&)> on_iteration;
};

struct KMeansResult {
    int64_t k = 0, dim = 0, n_total = 0;
    std::vector<float> centers;   // [k, dim], identical on every rank
    std::vector<int32_t> assign;  // [n_local]: center of each of this rank's points
    std::vector<float> dist;      // [n_local]: its squared distance
    std::vector<int64_t> sizes;   // [k]: points per center, all ranks
    double inertia = 0.0;         // sum of dist over all ranks
    int iterations = 0;           // Lloyd iterations run
};

// Collective over comm. x: this rank's n_local points [n_local, dim] (row-major);
// the global order of the points is rank 0's block, then rank 1's, ...
// init_centers (optional, [k, dim], same on every rank) replaces the init.
KMeansResult kmeans(Backend& be, const Communicator& comm, const float* x, int64_t n_local,
                    int64_t dim, const KMeansOptions& opt, const float* init_centers = nullptr);

// k-means++ / random init alone (collective): [k, dim] centers, same on every rank.
std::vector<float> kmeans_init(const Communicator& comm, const float* x, int64_t n_local,
                               int64_t dim, int64_t k, KMeansInit init, uint64_t seed,
                               uint64_t stream);

// Nearest-center assignment of many points against fixed centers on a backend
// (the "assign every example" pass). Not collective.
class NearestCenter {
public:
    NearestCenter(Backend& be, const float* centers, int64_t k, int64_t dim,
                  int64_t max_rows = 1 << 15, int64_t block_rows = 1024);
    ~NearestCenter();
    NearestCenter(const NearestCenter&) = delete;
    NearestCenter& operator=(const NearestCenter&) = delete;
    void set_centers(const float* centers);
    // Any n; processed max_rows at a time. dist may be null.
    void assign(const float* x, int64_t n, int32_t* assign, float* dist);
    // Keep n <= max_rows points on the backend (uploaded once), then assign them as often
    // as the centers change (the Lloyd loop).
    void load(const float* x, int64_t n);
    void assign_loaded(int32_t* assign, float* dist);
    int64_t k() const { return k_; }

private:
    Backend& be_;
    int64_t k_, dim_, max_rows_, block_, loaded_ = -1;
    std::vector<void*> mem_;
    Tensor x_, centers_, csq_, scratch_, assign_, dist_;
    std::vector<double> host_dist_;
};

// The balanced assignment (collective), exposed for the tests: given this rank's
// squared distances dm [n_local, k] to the centers, assign every point so that
// the global cluster sizes are floor(N/k) or ceil(N/k) (exactly N mod k of the
// latter). Prices (one per center, in/out, identical on every rank; start at 0)
// are moved by `rounds` dual-ascent steps on the size constraints (each point
// takes argmin_k dm + price); then an exact repair moves, from every overfull
// cluster, the points cheapest to move (by dm, ties -> lower global index) to
// their nearest cluster with room, until every size fits. Same result for any
// number of ranks.
void balanced_assign(const Communicator& comm, const float* dm, int64_t n_local, int64_t k,
                     int rounds, std::vector<double>& prices, int32_t* assign, float* dist);

// Exact global sum of per-rank values (collective): terms quantized to a fixed
// point whose scale is set by `bound` >= max |term| and the global term count.
double exact_sum(const Communicator& comm, const double* terms, int64_t n_local, double bound);

}  // namespace curaclip::mode
