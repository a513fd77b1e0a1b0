// The JEST sampler: exact fixed-point score states for the sigmoid and softmax
// losses, shared by the gathered and the sharded mode (see sampler.h for the
// algorithm, the determinism argument and the cost).
#include "jest/sampler.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "core/check.h"
#include "core/fixed_point.h"
#include "core/host_math.h"

namespace curaclip::jest {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
// q(x) = round(x * scale), ties to even: exact fixed point (core/fixed_point.h).
inline int64_t q(double x, double scale) { return quantize_nearest(x, scale); }

// Order-preserving int keys of floats (for max reductions that vectorize).
inline int32_t fkey(float x) {
    const int32_t i = std::bit_cast<int32_t>(x);
    return i ^ ((i >> 31) & 0x7fffffff);
}
inline float funkey(int32_t k) { return std::bit_cast<float>(k ^ ((k >> 31) & 0x7fffffff)); }

// ---- vectorized row kernels --------------------------------------------------------------
// d[i] += q(x[i])
CC_VECTOR_CLONES void add_q(int64_t* d, const float* x, int64_t n, double scale) {
    for (int64_t i = 0; i < n; ++i) d[i] += q(double(x[i]), scale);
}
// Σ q(row[idx[t]])
CC_VECTOR_CLONES int64_t sum_q_gather(const float* row, const int64_t* idx, int64_t n, double scale) {
    int64_t s = 0;
    for (int64_t t = 0; t < n; ++t) s += q(double(row[idx[t]]), scale);
    return s;
}
// max x[i] (finite values)
CC_VECTOR_CLONES float max_of(const float* x, int64_t n) {
    int32_t m = std::numeric_limits<int32_t>::min();
    for (int64_t i = 0; i < n; ++i) m = std::max(m, fkey(x[i]));
    return funkey(m);
}
// m[i] = max(m[i], key(x[i])) (keys of finite floats)
CC_VECTOR_CLONES void max_keys(int32_t* m, const float* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) m[i] = std::max(m[i], fkey(x[i]));
}
// Σ q(exp(x[i] - m))
CC_VECTOR_CLONES int64_t sum_q_exp_d(const double* x, int64_t n, double m, double scale) {
    int64_t s = 0;
    for (int64_t i = 0; i < n; ++i) s += q(host::fast_exp_f64(x[i] - m), scale);
    return s;
}
// The same in float (host::fast_exp, ~1e-7 relative, 16 lanes): the O(B^2) first pass.
CC_VECTOR_CLONES int64_t sum_q_expf(const float* x, int64_t n, float m, double scale) {
    int64_t s = 0;
    for (int64_t i = 0; i < n; ++i) s += q(double(host::fast_exp(x[i] - m)), scale);
    return s;
}
CC_VECTOR_CLONES void add_q_expf(int64_t* d, const float* x, const float* m, int64_t n, double scale) {
    for (int64_t i = 0; i < n; ++i) d[i] += q(double(host::fast_exp(x[i] - m[i])), scale);
}
// d[i] += q(exp(x[i] - m[i]))
CC_VECTOR_CLONES void add_q_exp(int64_t* d, const float* x, const double* m, int64_t n, double scale) {
    for (int64_t i = 0; i < n; ++i) d[i] += q(host::fast_exp_f64(double(x[i]) - m[i]), scale);
}

// Host collectives of the score states; inactive (no messages) for one process and
// for the gathered mode, where every rank holds all rows.
struct HostComm {
    const Communicator* comm = nullptr;  // null: inactive
    void sum(int64_t* x, size_t n) const {
        if (comm) comm->allreduce_sum(x, n);  // integers: exact in any order
    }
    void max(double* x, size_t n) const {
        if (comm) comm->allreduce_max(x, n);  // max: exact in any order
    }
    // recv[B] = the owners' values: rank r contributes rows [r*n, (r+1)*n).
    template <typename T>
    void gather_rows(const T* send, T* recv, size_t n, int64_t row_begin) const {
        if (comm) comm->allgather(send, recv, n);
        else std::copy(send, send + n, recv + row_begin);
    }
};

// The rows a rank sees: rows [row_begin, row_begin + rows) of B x B matrices.
struct View {
    int64_t B = 0, row_begin = 0, rows = 0;
    const float* L = nullptr;      // sigmoid
    const float* model[2] = {};    // softmax logits: learner, reference (null: unused)
    // Optional transposes (null: gather instead), laid out [rows / seg][B][seg]: seg = rows
    // for one block, B / P for the blocks of P ranks all-gathered.
    const float* LT = nullptr;
    const float* modelT[2] = {};
    int64_t seg = 1;
    bool own(int64_t c) const { return c >= row_begin && c < row_begin + rows; }
    // Column k of the rows, from local row i on (contiguous up to seg_end(i)).
    const float* trow(const float* XT, int64_t k, int64_t i) const {
        const int64_t s = i / seg;
        return XT + (s * B + k) * seg + (i - s * seg);
    }
    int64_t seg_end(int64_t i) const { return (i / seg + 1) * seg; }
};

// f(i, ie) over the pieces of the local rows [a, e) that lie in one transpose segment.
template <typename F>
void for_segments(const View& v, int64_t a, int64_t e, F&& f) {
    for (int64_t i = a; i < e;) {
        const int64_t ie = std::min(e, v.seg_end(i));
        f(i, ie);
        i = ie;
    }
}

// K sorted (locality only: the sums are exact) and its members in this rank's rows.
void sort_chunk(const std::vector<int64_t>& K_in, const View& v, std::vector<int64_t>& K,
                std::vector<int64_t>& own_k) {
    K.assign(K_in.begin(), K_in.end());
    std::sort(K.begin(), K.end());
    own_k.clear();
    for (int64_t k : K)
        if (v.own(k)) own_k.push_back(k);
}

// Runs f(c0, c1) over [0, n) split across the OpenMP threads (serially when the work
// n * per is small).
template <typename F>
void parallel_range(int64_t n, int64_t per, F&& f) {
    host::parallel_chunks(n, per > 0 ? (int64_t(1) << 15) / per : n, std::forward<F>(f));
}

class ScoreState {
public:
    virtual ~ScoreState() = default;
    // s(c|∅) for every c.
    virtual void first_scores(std::vector<double>& s) = 0;
    // S += K (collective). sel == nullptr: update every candidate; otherwise only the
    // sorted candidates sel (the same on every rank; what batch_score reads).
    virtual void add(const std::vector<int64_t>& K, const std::vector<int64_t>* sel) = 0;
    // s(c|S) for every c (in_S marks S; collective).
    virtual void scores(const std::vector<uint8_t>& in_S, std::vector<double>& s) = 0;
    // The batch score of S once every member has been add()ed (at least for sel = S).
    virtual double batch_score(const std::vector<int64_t>& S, const std::vector<uint8_t>& in_S) = 0;
};

// ---- sigmoid: additive scores --------------------------------------------------------------
class SigmoidState final : public ScoreState {
public:
    void init(const View& v, HostComm hc, double max_abs, int64_t b) {
        v_ = v;
        hc_ = hc;
        const int64_t B = v.B;
        // (2b+1) terms of |q| <= max_abs 2^F must stay below 2^62, and each below 2^50
        // (the exact range of q).
        int F = 40;
        if (max_abs > 0.0) {
            const double room = std::ldexp(1.0, 62) / (double(2 * b + 1) * max_abs);
            F = std::min(40, int(std::floor(std::log2(room))));
            F = std::min(F, 50 - int(std::ceil(std::log2(max_abs))));
        }
        CC_CHECK(F >= 8, "JEST: score magnitude ", max_abs,
                 " is too large for the exact fixed-point sums (the learner diverged?)");
        scale_ = std::ldexp(1.0, F);
        inv_ = std::ldexp(1.0, -F);
        diag_.assign(size_t(B), 0);
        acc_.assign(size_t(B), 0);
        own_.resize(size_t(v.rows));
        for (int64_t i = 0; i < v.rows; ++i) own_[size_t(i)] = q(double(v.L[i * B + v.row_begin + i]), scale_);
        hc_.gather_rows(own_.data(), diag_.data(), size_t(v.rows), v.row_begin);
    }
    void first_scores(std::vector<double>& s) override {
        s.resize(diag_.size());
        for (size_t c = 0; c < s.size(); ++c) s[c] = double(diag_[c]) * inv_;
    }
    void add(const std::vector<int64_t>& K_in, const std::vector<int64_t>* sel) override {
        const int64_t B = v_.B, rb = v_.row_begin;
        sort_chunk(K_in, v_, K_, own_k_);
        const float* L = v_.L;
        const double sc = scale_;
        const int64_t nk = int64_t(K_.size()), no = int64_t(own_k_.size());
        if (sel) {  // only the candidates in sel: O(|K| |sel|)
            const int64_t ns = int64_t(sel->size());
            delta_.assign(size_t(ns), 0);
            parallel_range(ns, nk + no, [&](int64_t i0, int64_t i1) {
                for (int64_t i = i0; i < i1; ++i) {
                    const int64_t c = (*sel)[size_t(i)];
                    int64_t d = 0;
                    if (v_.own(c)) d += sum_q_gather(L + (c - rb) * B, K_.data(), nk, sc);
                    for (int64_t t = 0; t < no; ++t) d += q(double(L[(own_k_[size_t(t)] - rb) * B + c]), sc);
                    delta_[size_t(i)] = d;
                }
            });
            hc_.sum(delta_.data(), delta_.size());
            for (int64_t i = 0; i < ns; ++i) acc_[size_t((*sel)[size_t(i)])] += delta_[size_t(i)];
            return;
        }
        // Every candidate. Without messages the updates go straight into acc (integer
        // sums: the same result); otherwise into delta, all-reduced.
        int64_t* d = acc_.data();
        if (hc_.comm) {
            delta_.assign(size_t(B), 0);
            d = delta_.data();
        }
        parallel_range(B, nk + no, [&](int64_t c0, int64_t c1) {
            // column part: Σ_{k∈K, own} L[k,c], rows of the chunk (contiguous)
            for (int64_t t = 0; t < no; ++t) add_q(d + c0, L + (own_k_[size_t(t)] - rb) * B + c0, c1 - c0, sc);
            // row part: Σ_{k∈K} L[c,k] for own c: rows k of the transpose, or a gather
            // from row c
            const int64_t r0 = std::max(c0, rb), r1 = std::min(c1, rb + v_.rows);
            if (v_.LT) {
                for_segments(v_, r0 - rb, r1 - rb, [&](int64_t i, int64_t ie) {
                    for (int64_t t = 0; t < nk; ++t) add_q(d + rb + i, v_.trow(v_.LT, K_[size_t(t)], i), ie - i, sc);
                });
            } else {
                for (int64_t c = r0; c < r1; ++c) d[c] += sum_q_gather(L + (c - rb) * B, K_.data(), nk, sc);
            }
        });
        if (hc_.comm) {
            hc_.sum(delta_.data(), delta_.size());
            for (int64_t c = 0; c < B; ++c) acc_[size_t(c)] += delta_[size_t(c)];
        }
    }
    void scores(const std::vector<uint8_t>&, std::vector<double>& s) override {
        s.resize(diag_.size());
        for (size_t c = 0; c < s.size(); ++c) s[c] = double(diag_[c] + acc_[c]) * inv_;
    }
    // (1/|S|) Σ_{i,j∈S} L[i,j] directly, without the accumulators: each own row i in S
    // gathered at the sorted columns S (O(|S|^2), one int64 all-reduced).
    double pair_score(const std::vector<int64_t>& S_sorted) {
        const int64_t ns = int64_t(S_sorted.size()), rb = v_.row_begin, B = v_.B;
        own_k_.clear();
        for (int64_t c : S_sorted)
            if (v_.own(c)) own_k_.push_back(c);
        const int64_t no = int64_t(own_k_.size());
        int64_t sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum) if (no * ns > (1 << 15))
        for (int64_t t = 0; t < no; ++t) sum += sum_q_gather(v_.L + (own_k_[size_t(t)] - rb) * B, S_sorted.data(), ns, scale_);
        hc_.sum(&sum, 1);
        return double(sum) * inv_ / double(ns);
    }
    double batch_score(const std::vector<int64_t>& S, const std::vector<uint8_t>&) override {
        // Σ_{c∈S} acc[c] = Σ_{c,k∈S} (L[k,c] + L[c,k]) = 2 Σ_{i,j∈S} L[i,j].
        int64_t sum = 0;
        for (int64_t c : S) sum += acc_[size_t(c)];
        return double(sum) * inv_ * 0.5 / double(S.size());
    }

private:
    View v_;
    HostComm hc_;
    double scale_ = 1.0, inv_ = 1.0;
    std::vector<int64_t> diag_, acc_, own_, delta_, K_, own_k_;
};

// ---- softmax: log-sum-exps over the selected set ----------------------------------------------
// Running (m, Σ q(exp(l - m))) of the rows (own c: over row c) and columns (all c) of one
// logit matrix, over the members of S added so far. m starts at the diagonal l[c,c].
struct LseAcc {
    std::vector<double> m_row, m_col;    // [rows], [B]
    std::vector<int64_t> a_row, a_col;   // [rows], [B]
};

class SoftmaxState final : public ScoreState {
public:
    void init(const View& v, HostComm hc) {
        v_ = v;
        hc_ = hc;
        const int64_t B = v.B;
        const int F = std::clamp(61 - int(std::ceil(std::log2(double(B + 1)))), 20, 50);
        scale_ = std::ldexp(1.0, F);
        inv_ = std::ldexp(1.0, -F);
        models_.clear();
        for (int m = 0; m < 2; ++m) {
            if (!v.model[m]) continue;
            models_.push_back(m);
            own_.resize(size_t(v.rows));
            diag_[m].resize(size_t(B));
            for (int64_t i = 0; i < v.rows; ++i) own_[size_t(i)] = double(v.model[m][i * B + v.row_begin + i]);
            hc_.gather_rows(own_.data(), diag_[m].data(), size_t(v.rows), v.row_begin);
            LseAcc& a = acc_[m];
            a.m_row.assign(diag_[m].begin() + v.row_begin, diag_[m].begin() + v.row_begin + v.rows);
            a.m_col.assign(diag_[m].begin(), diag_[m].end());
            a.a_row.assign(size_t(v.rows), 0);
            a.a_col.assign(size_t(B), 0);
        }
    }
    // Loss of each c in the whole super-batch (S = all B), without touching the
    // accumulators: pass 1 the row and column maxima, pass 2 the sums (the column
    // partials per thread, combined exactly). The 2 B^2 exps of pass 2 are float
    // (host::fast_exp of the float difference l - max): ~1e-6 relative per term, below
    // the float32 rounding of the logits themselves (|l| up to exp(t) ~ 100); the
    // per-chunk sums stay double.
    void first_scores(std::vector<double>& s) override {
        const int64_t B = v_.B, R = v_.rows, rb = v_.row_begin;
        s.assign(size_t(B), 0.0);
        const int nt = omp_get_max_threads();
        for (int m : models_) {
            const float* l = v_.model[m];
            rmax_.resize(size_t(R));
            ckeys_.assign(size_t(nt) * size_t(B), std::numeric_limits<int32_t>::min());
            parallel_range(R, B, [&](int64_t i0, int64_t i1) {
                int32_t* ck = ckeys_.data() + size_t(omp_get_thread_num()) * size_t(B);
                for (int64_t i = i0; i < i1; ++i) {
                    rmax_[size_t(i)] = double(max_of(l + i * B, B));
                    max_keys(ck, l + i * B, B);
                }
            });
            cmax_.assign(size_t(B), kNegInf);
            for (int t = 0; t < nt; ++t)
                for (int64_t c = 0; c < B; ++c) {
                    const int32_t k = ckeys_[size_t(t) * size_t(B) + size_t(c)];
                    if (k != std::numeric_limits<int32_t>::min()) cmax_[size_t(c)] = std::max(cmax_[size_t(c)], double(funkey(k)));
                }
            hc_.max(cmax_.data(), cmax_.size());
            cmaxf_.resize(size_t(B));  // maxima of floats: exact as floats
            for (int64_t c = 0; c < B; ++c) cmaxf_[size_t(c)] = float(cmax_[size_t(c)]);
            rsum_.resize(size_t(R));
            csum_t_.assign(size_t(nt) * size_t(B), 0);
            parallel_range(R, B, [&](int64_t i0, int64_t i1) {
                int64_t* cs = csum_t_.data() + size_t(omp_get_thread_num()) * size_t(B);
                for (int64_t i = i0; i < i1; ++i) {
                    rsum_[size_t(i)] = sum_q_expf(l + i * B, B, float(rmax_[size_t(i)]), scale_);
                    add_q_expf(cs, l + i * B, cmaxf_.data(), B, scale_);
                }
            });
            csum_.assign(size_t(B), 0);
            for (int t = 0; t < nt; ++t)
                for (int64_t c = 0; c < B; ++c) csum_[size_t(c)] += csum_t_[size_t(t) * size_t(B) + size_t(c)];
            hc_.sum(csum_.data(), csum_.size());
            own_.resize(size_t(R));
            for (int64_t i = 0; i < R; ++i) own_[size_t(i)] = rmax_[size_t(i)] + std::log(double(rsum_[size_t(i)]) * inv_);
            row_lse_.resize(size_t(B));
            hc_.gather_rows(own_.data(), row_lse_.data(), size_t(R), rb);
            const double sign = m == 0 ? 1.0 : -1.0;  // learnability = learner - reference
            const std::vector<double>& d = diag_[m];
#pragma omp parallel for schedule(static) if (B > 4096)
            for (int64_t c = 0; c < B; ++c) {
                const double col = cmax_[size_t(c)] + std::log(double(csum_[size_t(c)]) * inv_);
                s[size_t(c)] += sign * (-d[size_t(c)] + 0.5 * (row_lse_[size_t(c)] + col));
            }
        }
    }
    void add(const std::vector<int64_t>& K_in, const std::vector<int64_t>* sel) override {
        const int64_t B = v_.B, rb = v_.row_begin, R = v_.rows;
        sort_chunk(K_in, v_, K_, own_k_);
        const int64_t nk = int64_t(K_.size()), no = int64_t(own_k_.size());
        const double sc = scale_;
        // The candidates to update: every c, or sel. Own rows among them.
        rows_.clear();
        if (sel) {
            for (int64_t c : *sel)
                if (v_.own(c)) rows_.push_back(c - rb);
        } else {
            rows_.resize(size_t(R));
            for (int64_t i = 0; i < R; ++i) rows_[size_t(i)] = i;
        }
        const int64_t nr = int64_t(rows_.size());
        // Rows: entirely local to the owner. With the transposes: the chunk's columns as
        // rows (vectorized max, rescale, exp-sum). Otherwise gather the chunk's logits of
        // the row, then a vectorized max and exp-sum.
        for (int m : models_) {
            const float* l = v_.model[m];
            const float* lT = v_.modelT[m];
            LseAcc& a = acc_[m];
            if (lT && !sel) {
                parallel_range(R, nk, [&](int64_t i0, int64_t i1) {
                    std::vector<int32_t> rk(static_cast<size_t>(i1 - i0));
                    for (int64_t i = i0; i < i1; ++i) rk[size_t(i - i0)] = fkey(float(a.m_row[size_t(i)]));
                    for_segments(v_, i0, i1, [&](int64_t i, int64_t ie) {
                        for (int64_t t = 0; t < nk; ++t) max_keys(rk.data() + (i - i0), v_.trow(lT, K_[size_t(t)], i), ie - i);
                    });
                    for (int64_t i = i0; i < i1; ++i)
                        rescale(a.m_row[size_t(i)], a.a_row[size_t(i)], double(funkey(rk[size_t(i - i0)])));
                    for_segments(v_, i0, i1, [&](int64_t i, int64_t ie) {
                        for (int64_t t = 0; t < nk; ++t)
                            add_q_exp(a.a_row.data() + i, v_.trow(lT, K_[size_t(t)], i), a.m_row.data() + i, ie - i, sc);
                    });
                });
                continue;
            }
            parallel_range(nr, nk, [&](int64_t j0, int64_t j1) {
                std::vector<double> tmp(static_cast<size_t>(nk));
                for (int64_t j = j0; j < j1; ++j) {
                    const int64_t i = rows_[size_t(j)];
                    const float* row = l + i * B;
                    double mx = a.m_row[size_t(i)];
                    for (int64_t t = 0; t < nk; ++t) {
                        tmp[size_t(t)] = double(row[K_[size_t(t)]]);
                        mx = std::max(mx, tmp[size_t(t)]);
                    }
                    int64_t acc = a.a_row[size_t(i)];
                    if (mx > a.m_row[size_t(i)]) {
                        acc = std::llrint(double(acc) * std::exp(a.m_row[size_t(i)] - mx));
                        a.m_row[size_t(i)] = mx;
                    }
                    a.a_row[size_t(i)] = acc + sum_q_exp_d(tmp.data(), nk, mx, sc);
                }
            });
        }
        // Columns: partial max and sums over this rank's rows k in K, reduced exactly.
        const size_t nm = models_.size();
        if (sel) {
            const int64_t ns = int64_t(sel->size());
            pmax_.assign(nm * size_t(ns), kNegInf);
            for (size_t mi = 0; mi < nm; ++mi) {
                const float* l = v_.model[models_[mi]];
                for (int64_t j = 0; j < ns; ++j) {
                    const int64_t c = (*sel)[size_t(j)];
                    double mx = kNegInf;
                    for (int64_t t = 0; t < no; ++t) mx = std::max(mx, double(l[(own_k_[size_t(t)] - rb) * B + c]));
                    pmax_[mi * size_t(ns) + size_t(j)] = mx;
                }
            }
            hc_.max(pmax_.data(), pmax_.size());
            psum_.assign(nm * size_t(ns), 0);
            for (size_t mi = 0; mi < nm; ++mi) {
                const float* l = v_.model[models_[mi]];
                LseAcc& a = acc_[models_[mi]];
                for (int64_t j = 0; j < ns; ++j) {
                    const int64_t c = (*sel)[size_t(j)];
                    rescale(a.m_col[size_t(c)], a.a_col[size_t(c)], pmax_[mi * size_t(ns) + size_t(j)]);
                    const double mc = a.m_col[size_t(c)];
                    int64_t s = 0;
                    for (int64_t t = 0; t < no; ++t)
                        s += q(host::fast_exp_f64(double(l[(own_k_[size_t(t)] - rb) * B + c]) - mc), sc);
                    psum_[mi * size_t(ns) + size_t(j)] = s;
                }
            }
            hc_.sum(psum_.data(), psum_.size());
            for (size_t mi = 0; mi < nm; ++mi) {
                LseAcc& a = acc_[models_[mi]];
                for (int64_t j = 0; j < ns; ++j)
                    a.a_col[size_t((*sel)[size_t(j)])] += psum_[mi * size_t(ns) + size_t(j)];
            }
            return;
        }
        pkeys_.resize(size_t(B));
        pmax_.resize(nm * size_t(B));
        for (size_t mi = 0; mi < nm; ++mi) {
            const float* l = v_.model[models_[mi]];
            double* pm = pmax_.data() + mi * size_t(B);
            parallel_range(B, no, [&](int64_t c0, int64_t c1) {
                std::fill(pkeys_.begin() + c0, pkeys_.begin() + c1, std::numeric_limits<int32_t>::min());
                for (int64_t t = 0; t < no; ++t) max_keys(pkeys_.data() + c0, l + (own_k_[size_t(t)] - rb) * B + c0, c1 - c0);
                for (int64_t c = c0; c < c1; ++c)
                    pm[c] = no > 0 ? double(funkey(pkeys_[size_t(c)])) : kNegInf;
            });
        }
        hc_.max(pmax_.data(), pmax_.size());
        psum_.assign(nm * size_t(B), 0);
        for (size_t mi = 0; mi < nm; ++mi) {
            const float* l = v_.model[models_[mi]];
            LseAcc& a = acc_[models_[mi]];
            const double* pm = pmax_.data() + mi * size_t(B);
            int64_t* ps = psum_.data() + mi * size_t(B);
            parallel_range(B, no + 1, [&](int64_t c0, int64_t c1) {
                for (int64_t c = c0; c < c1; ++c) rescale(a.m_col[size_t(c)], a.a_col[size_t(c)], pm[c]);
                for (int64_t t = 0; t < no; ++t)
                    add_q_exp(ps + c0, l + (own_k_[size_t(t)] - rb) * B + c0, a.m_col.data() + c0, c1 - c0, sc);
            });
        }
        hc_.sum(psum_.data(), psum_.size());
        for (size_t mi = 0; mi < nm; ++mi) {
            LseAcc& a = acc_[models_[mi]];
            for (int64_t c = 0; c < B; ++c) a.a_col[size_t(c)] += psum_[mi * size_t(B) + size_t(c)];
        }
    }
    void scores(const std::vector<uint8_t>& in_S, std::vector<double>& s) override {
        const int64_t B = v_.B, R = v_.rows, rb = v_.row_begin;
        s.assign(size_t(B), 0.0);
        own_.resize(size_t(R));
        row_lse_.resize(size_t(B));
        for (int m : models_) {
            const LseAcc& a = acc_[m];
            const std::vector<double>& d = diag_[m];
#pragma omp parallel for schedule(static) if (R > 4096)
            for (int64_t i = 0; i < R; ++i)
                own_[size_t(i)] = lse(a.m_row[size_t(i)], a.a_row[size_t(i)], d[size_t(rb + i)], in_S[size_t(rb + i)]);
            hc_.gather_rows(own_.data(), row_lse_.data(), size_t(R), rb);
            const double sign = m == 0 ? 1.0 : -1.0;  // learnability = learner - reference
#pragma omp parallel for schedule(static) if (B > 4096)
            for (int64_t c = 0; c < B; ++c) {
                const double col = lse(a.m_col[size_t(c)], a.a_col[size_t(c)], d[size_t(c)], in_S[size_t(c)]);
                const double loss = -d[size_t(c)] + 0.5 * (row_lse_[size_t(c)] + col);
                s[size_t(c)] += sign * loss;
            }
        }
    }
    double batch_score(const std::vector<int64_t>& S, const std::vector<uint8_t>& in_S) override {
        scores(in_S, tmp_scores_);
        double sum = 0.0;
        for (int64_t c : S) sum += tmp_scores_[size_t(c)];
        return sum / double(S.size());
    }

private:
    // A larger max m_new (identical on every rank) rescales the integer sum from identical bits.
    static void rescale(double& m, int64_t& acc, double m_new) {
        if (m_new > m) {
            acc = std::llrint(double(acc) * std::exp(m - m_new));
            m = m_new;
        }
    }
    // LSE over S + c from (m, Σ_{k∈S} q(exp(l_k - m))): the self term l[c,c] joins unless c ∈ S.
    double lse(double m, int64_t acc, double self, uint8_t c_in_S) const {
        if (!c_in_S) acc += q(host::fast_exp_f64(self - m), scale_);
        return m + std::log(double(acc) * inv_);
    }

    View v_;
    HostComm hc_;
    double scale_ = 1.0, inv_ = 1.0;
    std::vector<int> models_;
    std::vector<double> diag_[2];
    LseAcc acc_[2];
    std::vector<int64_t> K_, own_k_, rows_;
    std::vector<double> own_, row_lse_, rmax_, cmax_, pmax_, tmp_scores_;
    std::vector<int32_t> ckeys_, pkeys_;
    std::vector<float> cmaxf_;
    std::vector<int64_t> rsum_, csum_, csum_t_, psum_;
};

View view_of(const ScoreBlock& blk) {
    View v;
    v.B = blk.B;
    v.row_begin = blk.row_begin;
    v.rows = blk.rows;
    v.L = blk.L.empty() ? nullptr : blk.L.data();
    v.model[0] = blk.learner.empty() ? nullptr : blk.learner.data();
    v.model[1] = blk.reference.empty() ? nullptr : blk.reference.data();
    v.LT = blk.LT.empty() ? nullptr : blk.LT.data();
    v.modelT[0] = blk.learnerT.empty() ? nullptr : blk.learnerT.data();
    v.modelT[1] = blk.referenceT.empty() ? nullptr : blk.referenceT.data();
    v.seg = std::max<int64_t>(blk.rows, 1);
    return v;
}

// The matrices a block must carry, and their sizes.
void check_block(const ScoreBlock& blk, int64_t B, int64_t row_begin, int64_t rows) {
    CC_CHECK(blk.B == B && blk.row_begin == row_begin && blk.rows == rows, "JEST sampler: score block of rows [",
             blk.row_begin, ", ", blk.row_begin + blk.rows, ") of B = ", blk.B, " given, expected rows [",
             row_begin, ", ", row_begin + rows, ") of B = ", B);
    const size_t n = size_t(rows * B);
    CC_CHECK((blk.LT.empty() || blk.LT.size() == n) && (blk.learnerT.empty() || blk.learnerT.size() == n) &&
                 (blk.referenceT.empty() || blk.referenceT.size() == n),
             "JEST sampler: a transposed score block has the wrong size, expected ", n);
    CC_CHECK(blk.learnerT.empty() || !blk.learner.empty(), "JEST sampler: learnerT without learner");
    CC_CHECK(blk.referenceT.empty() || !blk.reference.empty(), "JEST sampler: referenceT without reference");
    if (blk.loss == LossKind::sigmoid) {
        CC_CHECK(blk.L.size() == n, "JEST sampler: sigmoid score block holds ", blk.L.size(),
                 " values, expected ", n);
    } else {
        CC_CHECK(blk.uses_learner() == !blk.learner.empty() && blk.uses_reference() == !blk.reference.empty(),
                 "JEST sampler: softmax score block lacks the logits its score kind (",
                 score_kind_name(blk.kind), ") needs");
        CC_CHECK((blk.learner.empty() || blk.learner.size() == n) &&
                     (blk.reference.empty() || blk.reference.size() == n),
                 "JEST sampler: softmax logit blocks have the wrong size, expected ", n);
    }
}

// Local max |x| over the matrices of the block, and whether any value is not finite
// (bad = 1). From the block's own statistics when LearnabilityMatrix made it.
void scan_block(const ScoreBlock& blk, double& max_abs, double& bad) {
    if (blk.stats_valid) {
        max_abs = blk.all_finite ? blk.max_abs : 0.0;
        bad = blk.all_finite ? 0.0 : 1.0;
        return;
    }
    uint32_t mx = 0;
    for (const std::vector<float>* v : {&blk.L, &blk.learner, &blk.reference})
        mx = std::max(mx, max_abs_bits(v->data(), int64_t(v->size())));
    bad = mx >= 0x7f800000u ? 1.0 : 0.0;
    max_abs = bad == 0.0 ? double(std::bit_cast<float>(mx)) : 0.0;
}

// Gumbel-top-k into out, keys in a reused buffer; the noise of the candidates in parallel.
void top_k_into(const std::vector<double>& scores, const uint8_t* excluded, int64_t k, double tau,
                const Philox& rng, uint64_t offset, bool noise, std::vector<double>& key,
                std::vector<std::pair<double, int64_t>>& keys, std::vector<int64_t>& out) {
    const int64_t n = int64_t(scores.size());
    CC_CHECK(tau > 0.0, "gumbel_top_k: temperature must be > 0, got ", tau);
    key.resize(size_t(n));
#pragma omp parallel for schedule(static) if (noise && n > 2048)
    for (int64_t c = 0; c < n; ++c) {
        if (excluded && excluded[c]) continue;
        key[size_t(c)] = scores[size_t(c)] / tau + (noise ? gumbel_at(rng, offset + uint64_t(c)) : 0.0);
    }
    keys.clear();
    for (int64_t c = 0; c < n; ++c)
        if (!excluded || !excluded[c]) keys.emplace_back(key[size_t(c)], c);
    CC_CHECK(k >= 0 && k <= int64_t(keys.size()), "gumbel_top_k: cannot take ", k, " of ", keys.size(),
             " candidates");
    // Strict total order: larger key first, then smaller index.
    auto before = [](const std::pair<double, int64_t>& a, const std::pair<double, int64_t>& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    if (k < int64_t(keys.size())) std::nth_element(keys.begin(), keys.begin() + k, keys.end(), before);
    keys.resize(static_cast<size_t>(k));
    std::sort(keys.begin(), keys.end(), before);
    out.resize(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) out[size_t(i)] = keys[size_t(i)].second;
}

}  // namespace

namespace detail {
struct SamplerWorkspace {
    SigmoidState sigmoid;
    SoftmaxState softmax;
    std::vector<uint8_t> in_S;
    std::vector<double> self, s, key, zeros;
    std::vector<std::pair<double, int64_t>> keys;
    std::vector<int64_t> chunk, sorted_sel;
};
}  // namespace detail
using detail::SamplerWorkspace;

namespace {
void select_chunks(ScoreState& st, SamplerWorkspace& w, const JestConfig& cfg, int64_t B, int64_t b,
                   const Philox& rng, std::vector<int64_t>& sel);
}

double gumbel_at(const Philox& rng, uint64_t index) {
    uint32_t w[4];
    rng.block(index, w);
    const uint64_t u64 = (uint64_t(w[0]) << 32) | w[1];
    const double u = (double(u64 >> 11) + 0.5) * (1.0 / 9007199254740992.0);  // (0, 1)
    return -std::log(-std::log(u));
}

std::vector<int64_t> gumbel_top_k(const std::vector<double>& scores, const std::vector<uint8_t>& excluded,
                                  int64_t k, double tau, const Philox& rng, uint64_t offset, bool noise) {
    CC_CHECK(excluded.empty() || excluded.size() == scores.size(), "gumbel_top_k: excluded has ",
             excluded.size(), " entries for ", scores.size(), " scores");
    std::vector<double> key;
    std::vector<std::pair<double, int64_t>> keys;
    std::vector<int64_t> out;
    top_k_into(scores, excluded.empty() ? nullptr : excluded.data(), k, tau, rng, offset, noise, key, keys, out);
    return out;
}

std::vector<double> conditional_scores(const ScoreBlock& full, const std::vector<int64_t>& S) {
    check_block(full, full.B, 0, full.B);
    double max_abs = 0.0, bad = 0.0;
    scan_block(full, max_abs, bad);
    CC_CHECK(bad == 0.0, "conditional_scores: non-finite score");
    const int64_t b = std::max<int64_t>(int64_t(S.size()), 1);
    SigmoidState sig;
    SoftmaxState soft;
    ScoreState* st = &sig;
    if (full.loss == LossKind::sigmoid) sig.init(view_of(full), HostComm{}, max_abs, b);
    else {
        soft.init(view_of(full), HostComm{});
        st = &soft;
    }
    std::vector<double> s;
    if (S.empty()) {
        st->first_scores(s);
        return s;
    }
    std::vector<uint8_t> in_S(size_t(full.B), 0);
    for (int64_t c : S) in_S[size_t(c)] = 1;
    st->add(S, nullptr);
    st->scores(in_S, s);
    return s;
}

Sampler::Sampler(const JestConfig& cfg, int64_t super_batch, const Communicator* comm)
    : cfg_(cfg), B_(super_batch), comm_(comm), ws_(std::make_unique<SamplerWorkspace>()) {
    if (comm_) {
        P_ = comm_->size();
        rank_ = comm_->rank();
    }
    cfg_.validate(B_, P_);
    b_ = cfg_.selected_batch(B_);
}
Sampler::~Sampler() = default;
Sampler::Sampler(Sampler&&) noexcept = default;
Sampler& Sampler::operator=(Sampler&&) noexcept = default;

namespace {
void select_chunks(ScoreState& st, SamplerWorkspace& w, const JestConfig& cfg, int64_t B, int64_t b,
                   const Philox& rng, std::vector<int64_t>& sel) {
    std::vector<uint8_t>& in_S = w.in_S;
    auto take = [&](const std::vector<int64_t>& chunk) {
        for (int64_t c : chunk) {
            sel.push_back(c);
            in_S[size_t(c)] = 1;
        }
    };
    // The selected set, sorted: the only candidates the batch score reads. The baselines
    // (last == sel) of the sigmoid loss take the batch score directly (pair_score).
    auto finish = [&](const std::vector<int64_t>& last) {
        w.sorted_sel.assign(sel.begin(), sel.end());
        std::sort(w.sorted_sel.begin(), w.sorted_sel.end());
        if (&last == &sel && &st == &w.sigmoid) return;
        st.add(last, &w.sorted_sel);
    };
    std::vector<int64_t>& chunk = w.chunk;
    if (cfg.method == SelectMethod::uniform) {
        w.zeros.assign(size_t(B), 0.0);
        top_k_into(w.zeros, nullptr, b, 1.0, rng, 0, true, w.key, w.keys, chunk);
        take(chunk);
        finish(sel);
        return;
    }
    st.first_scores(w.self);
    switch (cfg.method) {
        case SelectMethod::uniform: break;  // above
        case SelectMethod::independent_topk:
            top_k_into(w.self, nullptr, b, 1.0, rng, 0, false, w.key, w.keys, chunk);
            take(chunk);
            break;
        case SelectMethod::independent_sampled:
            top_k_into(w.self, nullptr, b, cfg.temperature, rng, 0, true, w.key, w.keys, chunk);
            take(chunk);
            break;
        case SelectMethod::joint: {
            const int64_t k = b / cfg.chunks;
            top_k_into(w.self, nullptr, k, cfg.temperature, rng, 0, true, w.key, w.keys, chunk);
            take(chunk);
            for (int j = 1; j < cfg.chunks; ++j) {
                st.add(chunk, nullptr);
                st.scores(in_S, w.s);
                top_k_into(w.s, in_S.data(), k, cfg.temperature, rng, uint64_t(j) * uint64_t(B), true, w.key,
                           w.keys, chunk);
                take(chunk);
            }
            // The last chunk has not been added yet; only the batch score reads it.
            finish(chunk);
            return;
        }
    }
    finish(sel);
}
}  // namespace

Selection Sampler::select(const ScoreBlock& block, uint64_t step) {
    const int64_t Bl = B_ / P_;
    CC_CHECK(block.loss == cfg_.loss && block.kind == cfg_.score, "JEST sampler: score block is for loss ",
             loss_kind_name(block.loss), " / score ", score_kind_name(block.kind), ", the sampler for ",
             loss_kind_name(cfg_.loss), " / ", score_kind_name(cfg_.score));
    check_block(block, B_, int64_t(rank_) * Bl, Bl);
    // Validate the scores everywhere before anything else, so every rank throws alike.
    double stat[2];
    scan_block(block, stat[0], stat[1]);
    if (comm_ && P_ > 1) comm_->allreduce_max(stat, 2);
    CC_CHECK(stat[1] == 0.0, "JEST: a score of the super-batch is not finite (NaN/Inf in the learner "
             "or reference embeddings or logit scale?); step ", step);

    View v;
    HostComm hc;
    if (cfg_.mode == SelectMode::gathered && P_ > 1) {
        full_.loss = block.loss;
        full_.kind = block.kind;
        full_.B = B_;
        full_.row_begin = 0;
        full_.rows = B_;
        auto gather = [&](const std::vector<float>& part, std::vector<float>& all) {
            all.resize(part.empty() ? 0 : size_t(B_ * B_));  // keeps its capacity across steps
            if (!part.empty()) comm_->allgather(part.data(), all.data(), part.size());
        };
        gather(block.L, full_.L);
        gather(block.learner, full_.learner);
        gather(block.reference, full_.reference);
        gather(block.LT, full_.LT);  // [P][B][Bl]: segments of Bl
        gather(block.learnerT, full_.learnerT);
        gather(block.referenceT, full_.referenceT);
        v = view_of(full_);
        v.seg = Bl;
    } else {
        v = view_of(block);
        // Sharded: the per-chunk all-reduces run even on one rank (nothing to reduce, but
        // the cost is that of the real code path, e.g. for bench_jest_sampler).
        if (cfg_.mode == SelectMode::sharded) hc.comm = comm_;
    }

    SamplerWorkspace& w = *ws_;
    ScoreState* st = nullptr;
    if (cfg_.loss == LossKind::sigmoid) {
        w.sigmoid.init(v, hc, stat[0], b_);
        st = &w.sigmoid;
    } else {
        w.softmax.init(v, hc);
        st = &w.softmax;
    }
    const Philox rng(cfg_.seed, RngPurpose::jest, step, 0);
    Selection out;
    out.indices.reserve(static_cast<size_t>(b_));
    w.in_S.assign(size_t(B_), 0);
    select_chunks(*st, w, cfg_, B_, b_, rng, out.indices);
    if (cfg_.method != SelectMethod::joint && st == &w.sigmoid) out.batch_score = w.sigmoid.pair_score(w.sorted_sel);
    else out.batch_score = st->batch_score(out.indices, w.in_S);
    if (cfg_.method == SelectMethod::uniform) {
        st->first_scores(w.self);  // for the logged self scores only
    }
    double ms = 0.0, mb = 0.0;
    for (int64_t c : out.indices) ms += w.self[size_t(c)];
    for (double x : w.self) mb += x;
    out.mean_self_score = ms / double(b_);
    out.superbatch_self_score = mb / double(B_);
    return out;
}

}  // namespace curaclip::jest
