// Distributed k-means (see kmeans.h for the algorithm and the determinism design).
#include "mode/kmeans.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <unordered_set>

#include "backend/curation_ops.h"
#include "core/check.h"
#include "core/fixed_point.h"
#include "core/philox.h"
#include "core/sampling.h"

namespace curaclip::mode {

KMeansInit parse_kmeans_init(const std::string& s) {
    if (s == "kmeans++" || s == "k-means++" || s == "kmeanspp") return KMeansInit::kmeanspp;
    if (s == "random") return KMeansInit::random;
    CC_USER_FAIL("--init: k-means init '", s, "' is not one of: kmeans++, random");
}
const char* kmeans_init_name(KMeansInit i) { return i == KMeansInit::kmeanspp ? "kmeans++" : "random"; }

namespace {


// Start row of every rank (size()+1 entries).
std::vector<int64_t> rank_offsets(const Communicator& comm, int64_t n_local) {
    std::vector<int64_t> counts(size_t(comm.size()));
    comm.allgather(&n_local, counts.data(), 1);
    std::vector<int64_t> off(counts.size() + 1, 0);
    for (size_t r = 0; r < counts.size(); ++r) off[r + 1] = off[r] + counts[r];
    return off;
}

int owner_of(const std::vector<int64_t>& off, int64_t g) {
    return int(std::upper_bound(off.begin(), off.end(), g) - off.begin()) - 1;
}

// Row g (global index) of the distributed points, on every rank (broadcast from its owner).
void fetch_row(const Communicator& comm, const float* x, int64_t dim, const std::vector<int64_t>& off,
               int64_t g, float* out) {
    const int owner = owner_of(off, g);
    CC_CHECK(owner >= 0 && owner < comm.size(), "k-means: point ", g, " out of range");
    if (comm.rank() == owner) std::memcpy(out, x + (g - off[size_t(owner)]) * dim, size_t(dim) * sizeof(float));
    comm.broadcast(out, size_t(dim), owner);
}

void check_inputs(const Communicator& comm, const float* x, int64_t n_local, int64_t dim, int64_t k,
                  int64_t* n_total) {
    CC_CHECK(n_local >= 0, "k-means: negative point count ", n_local);
    CC_CHECK(x != nullptr || n_local == 0, "k-means: null points");
    CC_CHECK(dim >= 1, "k-means: dimension ", dim, " (expected >= 1)");
    int64_t dims[2] = {dim, -dim};
    comm.allreduce_max(dims, 2);
    CC_CHECK(dims[0] == -dims[1], "k-means: the ranks disagree on the dimension (", -dims[1], " to ",
             dims[0], ")");
    int64_t n = n_local;
    comm.allreduce_sum(&n, 1);
    *n_total = n;
    CC_CHECK(k >= 1, "k-means: k = ", k, " (expected >= 1 center)");
    CC_CHECK(k <= std::numeric_limits<int32_t>::max(), "k-means: k = ", k, " does not fit i32 ids");
    CC_CHECK(k <= n, "k-means: k = ", k, " centers but only ", n, " points");
}

double sq_dist(const float* a, const float* b, int64_t dim) {
    double s = 0.0;
    for (int64_t d = 0; d < dim; ++d) {
        const double t = double(a[d]) - double(b[d]);
        s += t * t;
    }
    return s;
}

// s[d] += p[d] quantized, d < dim: compiled for AVX-512, AVX2 and the baseline on x86-64
// (a truncating conversion gives the same integers on all of them).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
void add_quantized(int64_t* s, const float* p, int64_t dim, double scale) {
    for (int64_t d = 0; d < dim; ++d) s[d] += quantize_truncate(double(p[d]), scale);
}

// This rank's share of an update: red = [k*dim fixed-point sums of the points of each
// center | k counts | points whose center changed from prev]. Integer sums, so any split
// over threads (like any split over ranks) gives the same bits; part holds the partial
// sums of threads 1.. (resized here).
void accumulate_fixed(const float* x, int64_t n_local, int64_t dim, int64_t k, const int32_t* assign,
                      const int32_t* prev, double scale, std::vector<int64_t>& red, std::vector<int64_t>& part) {
    const size_t len = red.size();
    const int threads = n_local * dim >= (int64_t(1) << 16) ? std::max(1, omp_get_max_threads()) : 1;
    part.assign(size_t(threads - 1) * len, 0);
    std::fill(red.begin(), red.end(), 0);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const int t = omp_get_thread_num();
        int64_t* acc = t == 0 ? red.data() : part.data() + size_t(t - 1) * len;
        int64_t* counts = acc + k * dim;
        int64_t changed = 0;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n_local; ++i) {
            const int64_t a = assign[i];
            add_quantized(acc + a * dim, x + i * dim, dim, scale);
            ++counts[a];
            changed += assign[i] != prev[i];
        }
        acc[len - 1] += changed;
    }
    for (int t = 1; t < threads; ++t) {
        const int64_t* p = part.data() + size_t(t - 1) * len;
        for (size_t j = 0; j < len; ++j) red[j] += p[j];
    }
}

}  // namespace

double exact_sum(const Communicator& comm, const double* terms, int64_t n_local, double bound) {
    int64_t n = n_local;
    comm.allreduce_sum(&n, 1);
    const double scale = std::ldexp(1.0, fixed_point_exponent(bound, n));
    int64_t s = 0;
    for (int64_t i = 0; i < n_local; ++i) s += quantize_truncate(terms[i], scale);
    comm.allreduce_sum(&s, 1);
    return double(s) / scale;
}

// ---- init ------------------------------------------------------------------------------------
std::vector<float> kmeans_init(const Communicator& comm, const float* x, int64_t n_local, int64_t dim,
                               int64_t k, KMeansInit init, uint64_t seed, uint64_t stream) {
    int64_t n_total = 0;
    check_inputs(comm, x, n_local, dim, k, &n_total);
    const std::vector<int64_t> off = rank_offsets(comm, n_local);
    Philox rng(seed, RngPurpose::kmeans, stream, 0);  // the same stream on every rank
    std::vector<float> centers(size_t(k * dim));
    if (init == KMeansInit::random) {
        // Floyd's sampling of k distinct points, visited in increasing index order.
        const std::vector<int64_t> idx = floyd_sample(rng, n_total, k);
        for (int64_t c = 0; c < k; ++c) fetch_row(comm, x, dim, off, idx[size_t(c)], &centers[size_t(c * dim)]);
        return centers;
    }
    // k-means++: the next center is drawn with probability proportional to the squared
    // distance to the nearest chosen center, by an exact integer prefix sum over all ranks.
    double max_norm = 0.0;
    for (int64_t i = 0; i < n_local; ++i) {
        double s = 0.0;
        for (int64_t d = 0; d < dim; ++d) s += double(x[i * dim + d]) * double(x[i * dim + d]);
        max_norm = std::max(max_norm, std::sqrt(s));
    }
    comm.allreduce_max(&max_norm, 1);
    const double scale = std::ldexp(1.0, fixed_point_exponent(4.0 * max_norm * max_norm + 1e-300, n_total));
    std::vector<double> d2(static_cast<size_t>(n_local), std::numeric_limits<double>::infinity());
    std::vector<int64_t> totals(size_t(comm.size()));
    for (int64_t c = 0; c < k; ++c) {
        float* ctr = &centers[size_t(c * dim)];
        int64_t g = 0;
        if (c == 0) {
            g = int64_t(rng.below(uint64_t(n_total)));
        } else {
            int64_t local = 0;
            for (int64_t i = 0; i < n_local; ++i) local += quantize_truncate(d2[size_t(i)], scale);
            comm.allgather(&local, totals.data(), 1);
            int64_t total = 0;
            for (int64_t t : totals) total += t;
            const uint64_t u = rng.below(uint64_t(std::max<int64_t>(total, 1)));
            if (total <= 0) {
                // Every point sits on a chosen center (fewer distinct points than k).
                g = int64_t(u % uint64_t(n_total));
            } else {
                int owner = 0;
                int64_t before = 0;
                while (owner + 1 < comm.size() && before + totals[size_t(owner)] <= int64_t(u))
                    before += totals[size_t(owner++)];
                int64_t pick = 0;
                if (comm.rank() == owner) {
                    int64_t acc = before;
                    pick = n_local - 1;
                    for (int64_t i = 0; i < n_local; ++i) {
                        acc += quantize_truncate(d2[size_t(i)], scale);
                        if (acc > int64_t(u)) {
                            pick = i;
                            break;
                        }
                    }
                    pick += off[size_t(owner)];
                }
                comm.broadcast(&pick, 1, owner);
                g = pick;
            }
        }
        fetch_row(comm, x, dim, off, g, ctr);
#pragma omp parallel for schedule(static) if (n_local * dim > (1 << 16))
        for (int64_t i = 0; i < n_local; ++i)
            d2[size_t(i)] = std::min(d2[size_t(i)], sq_dist(x + i * dim, ctr, dim));
    }
    return centers;
}

// ---- nearest center on a backend -------------------------------------------------------------
NearestCenter::NearestCenter(Backend& be, const float* centers, int64_t k, int64_t dim, int64_t max_rows,
                             int64_t block_rows)
    : be_(be), k_(k), dim_(dim), max_rows_(std::max<int64_t>(max_rows, 1)),
      block_(std::max<int64_t>(1, std::min(block_rows, max_rows_))) {
    CC_CHECK(k >= 1 && dim >= 1, "NearestCenter: k = ", k, ", dim = ", dim, " (expected >= 1)");
    const DType dt = be.dtype();
    auto alloc = [&](Shape s, DType t) {
        void* p = be_.alloc(size_t(s.numel()) * dtype_size(t));
        mem_.push_back(p);
        return Tensor{p, t, s};
    };
    x_ = alloc({max_rows_, dim}, dt);
    centers_ = alloc({k, dim}, dt);
    csq_ = alloc({k}, dt);
    scratch_ = alloc({block_, k}, dt);
    assign_ = alloc({max_rows_}, DType::i32);
    dist_ = alloc({max_rows_}, dt);
    host_dist_.resize(size_t(max_rows_));
    set_centers(centers);
}

NearestCenter::~NearestCenter() {
    for (void* p : mem_) be_.free(p);
}

void NearestCenter::set_centers(const float* centers) {
    // The squared norms of the centers as the backend stores them (backend.h, kmeans_assign):
    // on a bf16 backend the uploaded centers are rounded, and norms of the float values
    // would differ from theirs by more than the screen's margin (issue 16).
    be_.upload(centers_, centers);
    std::vector<double> stored(static_cast<size_t>(k_ * dim_)), csq(static_cast<size_t>(k_));
    be_.download(stored.data(), centers_);
    be_.synchronize();
    for (int64_t c = 0; c < k_; ++c) {
        double s = 0.0;
        for (int64_t d = 0; d < dim_; ++d) s += stored[size_t(c * dim_ + d)] * stored[size_t(c * dim_ + d)];
        csq[size_t(c)] = s;
    }
    be_.upload(csq_, csq.data());
}

void NearestCenter::assign(const float* x, int64_t n, int32_t* assign, float* dist) {
    for (int64_t r0 = 0; r0 < n; r0 += max_rows_) {
        const int64_t m = std::min(max_rows_, n - r0);
        load(x + r0 * dim_, m);
        assign_loaded(assign + r0, dist ? dist + r0 : nullptr);
    }
    loaded_ = -1;
}

void NearestCenter::load(const float* x, int64_t n) {
    CC_CHECK(n >= 0 && n <= max_rows_, "NearestCenter: ", n, " rows exceed the ", max_rows_, " it was laid out for");
    if (n > 0) be_.upload(x_.slice_rows(0, n), x);
    loaded_ = n;
}

void NearestCenter::assign_loaded(int32_t* assign, float* dist) {
    CC_CHECK(loaded_ >= 0, "NearestCenter: assign_loaded before load");
    const int64_t m = loaded_;
    if (m == 0) return;
    be_.curation().kmeans_assign(assign_.slice_rows(0, m), dist_.slice_rows(0, m), x_.slice_rows(0, m), centers_, csq_, scratch_);
    be_.download_raw(assign, assign_.slice_rows(0, m));
    if (dist) be_.download(dist, dist_.slice_rows(0, m));
    be_.synchronize();
}

// ---- balanced assignment ---------------------------------------------------------------------
void balanced_assign(const Communicator& comm, const float* dm, int64_t n_local, int64_t k, int rounds,
                     std::vector<double>& prices, int32_t* assign, float* dist) {
    CC_CHECK(k >= 1, "balanced assignment: k = ", k);
    const std::vector<int64_t> off = rank_offsets(comm, n_local);
    const int64_t n_total = off.back(), my0 = off[size_t(comm.rank())];
    CC_CHECK(n_total >= k, "balanced assignment: ", n_total, " points cannot fill ", k, " clusters");
    if (prices.size() != size_t(k)) prices.assign(size_t(k), 0.0);
    const int64_t q = n_total / k, r = n_total % k;
    const double target = double(n_total) / double(k);

    std::vector<int64_t> counts(static_cast<size_t>(k));
    auto assign_priced = [&] {
        std::fill(counts.begin(), counts.end(), 0);
#pragma omp parallel for schedule(static) if (n_local * k > (1 << 16))
        for (int64_t i = 0; i < n_local; ++i) {
            const float* row = dm + i * k;
            double best = std::numeric_limits<double>::infinity();
            int32_t arg = 0;
            for (int64_t c = 0; c < k; ++c) {
                const double v = double(row[c]) + prices[size_t(c)];
                if (v < best) {
                    best = v;
                    arg = int32_t(c);
                }
            }
            assign[i] = arg;
        }
        for (int64_t i = 0; i < n_local; ++i) ++counts[size_t(assign[i])];
        comm.allreduce_sum(counts.data(), counts.size());
    };
    auto balanced_now = [&] {
        int64_t big = 0;
        for (int64_t c : counts) {
            if (c < q || c > q + 1) return false;
            big += c == q + 1;
        }
        return big == r;
    };

    // Price scale: the mean gap between the nearest and second-nearest center (exact sum).
    double bound = 0.0;
    std::vector<double> gaps(static_cast<size_t>(n_local), 0.0);
    for (int64_t i = 0; i < n_local; ++i) {
        float a = std::numeric_limits<float>::infinity(), b = a;
        for (int64_t c = 0; c < k; ++c) {
            const float v = dm[i * k + c];
            if (v < a) { b = a; a = v; } else if (v < b) b = v;
        }
        gaps[size_t(i)] = k > 1 ? double(b) - double(a) : 0.0;
        bound = std::max(bound, gaps[size_t(i)]);
    }
    comm.allreduce_max(&bound, 1);
    const double gap = exact_sum(comm, gaps.data(), n_local, bound) / double(n_total);

    // 1. Dual ascent on the size constraints (prices depend on integer counts only).
    assign_priced();
    for (int t = 0; t < rounds && !balanced_now(); ++t) {
        const double eta = (gap > 0 ? gap : 1e-6) * 2.0 / double(t + 2);
        for (int64_t c = 0; c < k; ++c) prices[size_t(c)] += eta * (double(counts[size_t(c)]) - target) / target;
        assign_priced();
    }

    // 2. Exact repair. Capacities: the r largest clusters (ties -> lower id) take q + 1.
    std::vector<int64_t> order(static_cast<size_t>(k)), cap(size_t(k), q);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return counts[size_t(a)] > counts[size_t(b)]; });
    for (int64_t j = 0; j < r; ++j) cap[size_t(order[size_t(j)])] = q + 1;
    struct Cand {
        double m;
        int64_t g;
        int32_t from, to;
    };
    auto cand_less = [](const Cand& a, const Cand& b) { return a.m < b.m || (a.m == b.m && a.g < b.g); };
    for (;;) {
        std::vector<int64_t> over(static_cast<size_t>(k)), under(static_cast<size_t>(k));
        int64_t total_over = 0;
        std::vector<int32_t> room;
        for (int64_t c = 0; c < k; ++c) {
            over[size_t(c)] = std::max<int64_t>(0, counts[size_t(c)] - cap[size_t(c)]);
            under[size_t(c)] = std::max<int64_t>(0, cap[size_t(c)] - counts[size_t(c)]);
            total_over += over[size_t(c)];
            if (under[size_t(c)] > 0) room.push_back(int32_t(c));
        }
        if (total_over == 0) break;
        // This rank's candidates: per overfull cluster its over[c] cheapest moves.
        std::vector<Cand> local;
        for (int64_t i = 0; i < n_local; ++i) {
            const int32_t a = assign[i];
            if (over[size_t(a)] == 0) continue;
            const float* row = dm + i * k;
            int32_t best = room[0];
            for (int32_t j : room)
                if (row[j] < row[best]) best = j;
            local.push_back({double(row[best]) - double(row[a]), my0 + i, a, best});
        }
        std::sort(local.begin(), local.end(), [&](const Cand& a, const Cand& b) {
            return a.from < b.from || (a.from == b.from && cand_less(a, b));
        });
        std::vector<double> packed;
        for (size_t s = 0, taken = 0; s < local.size(); ++s) {
            taken = (s > 0 && local[s].from == local[s - 1].from) ? taken + 1 : 0;
            if (int64_t(taken) >= over[size_t(local[s].from)]) continue;
            packed.insert(packed.end(), {local[s].m, double(local[s].g), double(local[s].from), double(local[s].to)});
        }
        int64_t count = int64_t(packed.size() / 4);
        comm.allreduce_max(&count, 1);
        packed.resize(size_t(count * 4), -1.0);  // padding: from = -1
        std::vector<double> all(packed.size() * size_t(comm.size()));
        comm.allgather(packed.data(), all.data(), packed.size());
        std::vector<Cand> cands;
        for (size_t s = 0; s + 3 < all.size(); s += 4)
            if (all[s + 2] >= 0) cands.push_back({all[s], int64_t(all[s + 1]), int32_t(all[s + 2]), int32_t(all[s + 3])});
        std::sort(cands.begin(), cands.end(), [&](const Cand& a, const Cand& b) {
            return a.from < b.from || (a.from == b.from && cand_less(a, b));
        });
        std::vector<Cand> kept;
        for (size_t s = 0, taken = 0; s < cands.size(); ++s) {
            taken = (s > 0 && cands[s].from == cands[s - 1].from) ? taken + 1 : 0;
            if (int64_t(taken) < over[size_t(cands[s].from)]) kept.push_back(cands[s]);
        }
        std::sort(kept.begin(), kept.end(), cand_less);
        int64_t moved = 0;
        for (const Cand& c : kept) {
            if (over[size_t(c.from)] == 0 || under[size_t(c.to)] == 0) continue;
            --over[size_t(c.from)];
            --under[size_t(c.to)];
            --counts[size_t(c.from)];
            ++counts[size_t(c.to)];
            ++moved;
            if (c.g >= my0 && c.g < my0 + n_local) assign[c.g - my0] = c.to;
        }
        CC_CHECK(moved > 0, "balanced assignment: the repair made no progress (internal error)");
    }
    for (int64_t i = 0; i < n_local; ++i) dist[i] = dm[i * k + assign[i]];
}

// ---- Lloyd -------------------------------------------------------------------------------------
KMeansResult kmeans(Backend& be, const Communicator& comm, const float* x, int64_t n_local, int64_t dim,
                    const KMeansOptions& opt, const float* init_centers) {
    int64_t n_total = 0;
    check_inputs(comm, x, n_local, dim, opt.k, &n_total);
    CC_CHECK(opt.iters >= 0, "k-means: iterations = ", opt.iters, " (expected >= 0)");
    CC_CHECK(opt.block_rows >= 1, "k-means: block_rows = ", opt.block_rows, " (expected >= 1)");
    const int64_t k = opt.k;
    const std::vector<int64_t> off = rank_offsets(comm, n_local);
    const int64_t my0 = off[size_t(comm.rank())];

    KMeansResult res;
    res.k = k;
    res.dim = dim;
    res.n_total = n_total;
    double max_abs = 0.0;
    for (int64_t i = 0; i < n_local * dim; ++i)
        max_abs = std::isfinite(x[i]) ? std::max(max_abs, double(std::fabs(x[i])))
                                      : std::numeric_limits<double>::infinity();
    comm.allreduce_max(&max_abs, 1);
    CC_CHECK(std::isfinite(max_abs), "k-means: the points contain NaN or Inf");
    if (init_centers) res.centers.assign(init_centers, init_centers + k * dim);
    else res.centers = kmeans_init(comm, x, n_local, dim, k, opt.init, opt.seed, opt.stream);
    for (float v : res.centers) CC_CHECK(std::isfinite(v), "k-means: non-finite initial center");

    const double scale = std::ldexp(1.0, fixed_point_exponent(max_abs, n_total));

    NearestCenter nc(be, res.centers.data(), k, dim, std::max<int64_t>(n_local, 1), opt.block_rows);
    if (!opt.balanced) nc.load(x, n_local);
    std::vector<int32_t> assign(static_cast<size_t>(n_local), -1), prev;
    std::vector<float> dist(static_cast<size_t>(n_local));
    std::vector<float> dm;  // balanced: [n_local, k] squared distances
    std::vector<double> prices;
    if (opt.balanced) dm.resize(size_t(n_local * k));
    auto do_assign = [&] {
        if (!opt.balanced) {
            nc.assign_loaded(assign.data(), dist.data());
            return;
        }
        // Distances to every center, each summed over d in a fixed order (vectorized across
        // centers), so they do not depend on how the points are split between ranks.
        std::vector<float> ct(size_t(dim * k));  // centers transposed [dim, k]
        for (int64_t c = 0; c < k; ++c)
            for (int64_t d = 0; d < dim; ++d) ct[size_t(d * k + c)] = res.centers[size_t(c * dim + d)];
#pragma omp parallel for schedule(static) if (n_local * k * dim > (1 << 18))
        for (int64_t i = 0; i < n_local; ++i) {
            float* out = &dm[size_t(i * k)];
            std::fill(out, out + k, 0.0f);
            for (int64_t d = 0; d < dim; ++d) {
                const float xv = x[i * dim + d];
                const float* cr = &ct[size_t(d * k)];
                for (int64_t c = 0; c < k; ++c) {
                    const float t = xv - cr[c];
                    out[c] += t * t;
                }
            }
        }
        balanced_assign(comm, dm.data(), n_local, k, opt.balance_rounds, prices, assign.data(), dist.data());
    };

    // [k*dim sums | k counts | changed]; part: the other threads' partial sums
    std::vector<int64_t> red(size_t(k * dim + k + 1)), part;
    bool converged = false;
    int it = 0;
    for (; it < opt.iters; ++it) {
        prev = assign;
        do_assign();
        accumulate_fixed(x, n_local, dim, k, assign.data(), prev.data(), scale, red, part);
        int64_t* sums = red.data();
        int64_t* counts = sums + k * dim;
        double inertia = 0.0;
        for (int64_t i = 0; i < n_local; ++i) inertia += double(dist[size_t(i)]);
        comm.allreduce_sum(red.data(), red.size());
        comm.allreduce_sum(&inertia, 1);
        KMeansIteration st;
        st.iter = it;
        st.inertia = inertia;
        st.changed = red.back();
        st.sizes.assign(counts, counts + k);
        std::vector<int64_t> empty;
        for (int64_t c = 0; c < k; ++c) {
            if (counts[c] == 0) {
                empty.push_back(c);
                continue;
            }
            for (int64_t d = 0; d < dim; ++d)
                res.centers[size_t(c * dim + d)] = float(double(sums[c * dim + d]) / scale / double(counts[c]));
        }
        if (!empty.empty()) {
            // Re-seed with the points farthest from their centers (global top-E).
            const int64_t E = int64_t(empty.size());
            std::vector<int64_t> ord(static_cast<size_t>(n_local));
            std::iota(ord.begin(), ord.end(), 0);
            const int64_t take = std::min<int64_t>(E, n_local);
            std::partial_sort(ord.begin(), ord.begin() + take, ord.end(), [&](int64_t a, int64_t b) {
                return dist[size_t(a)] > dist[size_t(b)] || (dist[size_t(a)] == dist[size_t(b)] && a < b);
            });
            std::vector<double> mine(size_t(2 * E), -1.0), all(size_t(2 * E * comm.size()));
            for (int64_t j = 0; j < take; ++j) {
                mine[size_t(2 * j)] = double(dist[size_t(ord[size_t(j)])]);
                mine[size_t(2 * j + 1)] = double(my0 + ord[size_t(j)]);
            }
            comm.allgather(mine.data(), all.data(), mine.size());
            std::vector<std::pair<double, int64_t>> c;
            for (size_t s = 0; s < all.size(); s += 2)
                if (all[s + 1] >= 0) c.push_back({all[s], int64_t(all[s + 1])});
            std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) {
                return a.first > b.first || (a.first == b.first && a.second < b.second);
            });
            for (int64_t j = 0; j < E && j < int64_t(c.size()); ++j)
                fetch_row(comm, x, dim, off, c[size_t(j)].second, &res.centers[size_t(empty[size_t(j)] * dim)]);
            st.reseeded = E;
        }
        nc.set_centers(res.centers.data());
        if (opt.on_iteration) opt.on_iteration(st);
        res.sizes = st.sizes;
        res.inertia = inertia;
        if (opt.stop_when_stable && it > 0 && st.changed == 0 && st.reseeded == 0) {
            // Same assignment as the previous update: the centers did not move, and the
            // assignment already belongs to them.
            converged = true;
            ++it;
            break;
        }
    }
    res.iterations = it;
    if ((!converged && opt.final_assignment) || opt.iters == 0) {
        prev = assign;
        do_assign();
        KMeansIteration st;
        st.iter = it;
        st.sizes.assign(size_t(k), 0);
        for (int64_t i = 0; i < n_local; ++i) {
            ++st.sizes[size_t(assign[size_t(i)])];
            st.inertia += double(dist[size_t(i)]);
            st.changed += assign[size_t(i)] != prev[size_t(i)];
        }
        comm.allreduce_sum(st.sizes.data(), st.sizes.size());
        comm.allreduce_sum(&st.inertia, 1);
        comm.allreduce_sum(&st.changed, 1);
        if (opt.on_iteration) opt.on_iteration(st);
        res.sizes = st.sizes;
        res.inertia = st.inertia;
    }
    res.assign = std::move(assign);
    res.dist = std::move(dist);
    return res;
}

}  // namespace curaclip::mode
