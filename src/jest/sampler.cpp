// The JEST sampler: exact fixed-point score states for the sigmoid and softmax
// losses, shared by the gathered and the sharded mode (see sampler.h for the
// algorithm and the determinism argument).
#include "jest/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "core/check.h"

namespace curaclip::jest {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

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
    bool own(int64_t c) const { return c >= row_begin && c < row_begin + rows; }
};

inline int64_t q(double x, double scale) { return std::llrint(x * scale); }

class ScoreState {
public:
    virtual ~ScoreState() = default;
    // s(c|∅) for every c.
    virtual void first_scores(std::vector<double>& s) = 0;
    // S += K (collective).
    virtual void add(const std::vector<int64_t>& K) = 0;
    // s(c|S) for every c (in_S marks S; collective).
    virtual void scores(const std::vector<uint8_t>& in_S, std::vector<double>& s) = 0;
    // The batch score of S once every member has been add()ed.
    virtual double batch_score(const std::vector<int64_t>& S, const std::vector<uint8_t>& in_S) = 0;
};

// ---- sigmoid: additive scores --------------------------------------------------------------
class SigmoidState final : public ScoreState {
public:
    SigmoidState(const View& v, HostComm hc, double max_abs, int64_t b) : v_(v), hc_(hc) {
        const int64_t B = v.B;
        // (2b+1) terms of |q| <= max_abs 2^F must stay below 2^62.
        int F = 40;
        if (max_abs > 0.0) {
            const double room = std::ldexp(1.0, 62) / (double(2 * b + 1) * max_abs);
            F = std::min(40, int(std::floor(std::log2(room))));
        }
        CC_CHECK(F >= 8, "JEST: score magnitude ", max_abs,
                 " is too large for the exact fixed-point sums (the learner diverged?)");
        scale_ = std::ldexp(1.0, F);
        inv_ = std::ldexp(1.0, -F);
        diag_.assign(size_t(B), 0);
        acc_.assign(size_t(B), 0);
        std::vector<int64_t> own(size_t(v.rows));
        for (int64_t i = 0; i < v.rows; ++i) own[size_t(i)] = q(double(v.L[i * B + v.row_begin + i]), scale_);
        hc_.gather_rows(own.data(), diag_.data(), size_t(v.rows), v.row_begin);
    }
    void first_scores(std::vector<double>& s) override {
        s.resize(diag_.size());
        for (size_t c = 0; c < s.size(); ++c) s[c] = double(diag_[c]) * inv_;
    }
    void add(const std::vector<int64_t>& K_in) override {
        const int64_t B = v_.B;
        std::vector<int64_t> K(K_in);
        std::sort(K.begin(), K.end());  // locality only: integer sums do not care
        std::vector<int64_t> own_k;
        for (int64_t k : K)
            if (v_.own(k)) own_k.push_back(k);
        std::vector<int64_t> delta(size_t(B), 0);
        const float* L = v_.L;
        const double sc = scale_;
        const int64_t rb = v_.row_begin, nk = int64_t(K.size()), no = int64_t(own_k.size());
#pragma omp parallel for schedule(static) if (B * (nk + no) > (1 << 16))
        for (int64_t c = 0; c < B; ++c) {
            int64_t d = 0;
            if (v_.own(c)) {  // row part: Σ_{k∈K} L[c,k]
                const float* row = L + (c - rb) * B;
                for (int64_t t = 0; t < nk; ++t) d += q(double(row[K[size_t(t)]]), sc);
            }
            for (int64_t t = 0; t < no; ++t)  // column part: Σ_{k∈K, own} L[k,c]
                d += q(double(L[(own_k[size_t(t)] - rb) * B + c]), sc);
            delta[size_t(c)] = d;
        }
        hc_.sum(delta.data(), delta.size());
        for (int64_t c = 0; c < B; ++c) acc_[size_t(c)] += delta[size_t(c)];
    }
    void scores(const std::vector<uint8_t>&, std::vector<double>& s) override {
        s.resize(diag_.size());
        for (size_t c = 0; c < s.size(); ++c) s[c] = double(diag_[c] + acc_[c]) * inv_;
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
    std::vector<int64_t> diag_, acc_;
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
    SoftmaxState(const View& v, HostComm hc, ScoreKind kind) : v_(v), hc_(hc), kind_(kind) {
        const int64_t B = v.B;
        const int F = std::clamp(61 - int(std::ceil(std::log2(double(B + 1)))), 20, 52);
        scale_ = std::ldexp(1.0, F);
        inv_ = std::ldexp(1.0, -F);
        for (int m = 0; m < 2; ++m) {
            if (!v.model[m]) continue;
            models_.push_back(m);
            std::vector<double> own(size_t(v.rows)), all(static_cast<size_t>(B));
            for (int64_t i = 0; i < v.rows; ++i) own[size_t(i)] = double(v.model[m][i * B + v.row_begin + i]);
            hc_.gather_rows(own.data(), all.data(), size_t(v.rows), v.row_begin);
            diag_[m] = all;
            reset(acc_[m], m);
        }
    }
    void first_scores(std::vector<double>& s) override {
        // Loss of each c in the whole super-batch: S = all B (fresh accumulators).
        LseAcc saved[2] = {acc_[0], acc_[1]};
        std::vector<int64_t> all(size_t(v_.B));
        for (int64_t c = 0; c < v_.B; ++c) all[size_t(c)] = c;
        add(all);
        scores(std::vector<uint8_t>(size_t(v_.B), 1), s);
        acc_[0] = std::move(saved[0]);
        acc_[1] = std::move(saved[1]);
    }
    void add(const std::vector<int64_t>& K_in) override {
        const int64_t B = v_.B, rb = v_.row_begin, R = v_.rows;
        std::vector<int64_t> K(K_in);
        std::sort(K.begin(), K.end());
        std::vector<int64_t> own_k;
        for (int64_t k : K)
            if (v_.own(k)) own_k.push_back(k);
        const int64_t nk = int64_t(K.size()), no = int64_t(own_k.size());
        const size_t nm = models_.size();
        const double sc = scale_;
        // Rows: entirely local to the owner.
        for (int m : models_) {
            const float* l = v_.model[m];
            LseAcc& a = acc_[m];
#pragma omp parallel for schedule(static) if (R * nk > (1 << 14))
            for (int64_t i = 0; i < R; ++i) {
                const float* row = l + i * B;
                double mx = a.m_row[size_t(i)];
                for (int64_t t = 0; t < nk; ++t) mx = std::max(mx, double(row[K[size_t(t)]]));
                int64_t acc = a.a_row[size_t(i)];
                if (mx > a.m_row[size_t(i)]) {
                    acc = std::llrint(double(acc) * std::exp(a.m_row[size_t(i)] - mx));
                    a.m_row[size_t(i)] = mx;
                }
                for (int64_t t = 0; t < nk; ++t) acc += q(std::exp(double(row[K[size_t(t)]]) - mx), sc);
                a.a_row[size_t(i)] = acc;
            }
        }
        // Columns: partial max and sums over this rank's rows k in K, reduced exactly.
        std::vector<double> pmax(nm * size_t(B), kNegInf);
        for (size_t mi = 0; mi < nm; ++mi) {
            const float* l = v_.model[models_[mi]];
            double* pm = pmax.data() + mi * size_t(B);
#pragma omp parallel for schedule(static) if (B * no > (1 << 14))
            for (int64_t c = 0; c < B; ++c) {
                double mx = kNegInf;
                for (int64_t t = 0; t < no; ++t) mx = std::max(mx, double(l[(own_k[size_t(t)] - rb) * B + c]));
                pm[c] = mx;
            }
        }
        hc_.max(pmax.data(), pmax.size());
        std::vector<int64_t> psum(nm * size_t(B), 0);
        for (size_t mi = 0; mi < nm; ++mi) {
            const float* l = v_.model[models_[mi]];
            LseAcc& a = acc_[models_[mi]];
            const double* pm = pmax.data() + mi * size_t(B);
            int64_t* ps = psum.data() + mi * size_t(B);
#pragma omp parallel for schedule(static) if (B * (no + 1) > (1 << 14))
            for (int64_t c = 0; c < B; ++c) {
                if (pm[c] > a.m_col[size_t(c)]) {  // identical on every rank: rescale
                    a.a_col[size_t(c)] =
                        std::llrint(double(a.a_col[size_t(c)]) * std::exp(a.m_col[size_t(c)] - pm[c]));
                    a.m_col[size_t(c)] = pm[c];
                }
                const double mc = a.m_col[size_t(c)];
                int64_t s = 0;
                for (int64_t t = 0; t < no; ++t)
                    s += q(std::exp(double(l[(own_k[size_t(t)] - rb) * B + c]) - mc), sc);
                ps[c] = s;
            }
        }
        hc_.sum(psum.data(), psum.size());
        for (size_t mi = 0; mi < nm; ++mi) {
            LseAcc& a = acc_[models_[mi]];
            for (int64_t c = 0; c < B; ++c) a.a_col[size_t(c)] += psum[mi * size_t(B) + size_t(c)];
        }
    }
    void scores(const std::vector<uint8_t>& in_S, std::vector<double>& s) override {
        const int64_t B = v_.B, R = v_.rows, rb = v_.row_begin;
        s.assign(size_t(B), 0.0);
        std::vector<double> own(static_cast<size_t>(R)), row_lse(static_cast<size_t>(B));
        for (int m : models_) {
            const LseAcc& a = acc_[m];
            const std::vector<double>& d = diag_[m];
            for (int64_t i = 0; i < R; ++i)
                own[size_t(i)] = lse(a.m_row[size_t(i)], a.a_row[size_t(i)], d[size_t(rb + i)], in_S[size_t(rb + i)]);
            hc_.gather_rows(own.data(), row_lse.data(), size_t(R), rb);
            const double sign = m == 0 ? 1.0 : -1.0;  // learnability = learner - reference
            for (int64_t c = 0; c < B; ++c) {
                const double col = lse(a.m_col[size_t(c)], a.a_col[size_t(c)], d[size_t(c)], in_S[size_t(c)]);
                const double loss = -d[size_t(c)] + 0.5 * (row_lse[size_t(c)] + col);
                s[size_t(c)] += sign * loss;
            }
        }
        (void)kind_;  // the models present encode the kind (learner +, reference -)
    }
    double batch_score(const std::vector<int64_t>& S, const std::vector<uint8_t>& in_S) override {
        std::vector<double> s;
        scores(in_S, s);
        double sum = 0.0;
        for (int64_t c : S) sum += s[size_t(c)];
        return sum / double(S.size());
    }

private:
    void reset(LseAcc& a, int m) {
        a.m_row.assign(size_t(v_.rows), 0.0);
        for (int64_t i = 0; i < v_.rows; ++i) a.m_row[size_t(i)] = diag_[m][size_t(v_.row_begin + i)];
        a.m_col = diag_[m];
        a.a_row.assign(size_t(v_.rows), 0);
        a.a_col.assign(size_t(v_.B), 0);
    }
    // LSE over S + c from (m, Σ_{k∈S} q(exp(l_k - m))): the self term l[c,c] joins unless c ∈ S.
    double lse(double m, int64_t acc, double self, uint8_t c_in_S) const {
        if (!c_in_S) acc += q(std::exp(self - m), scale_);
        return m + std::log(double(acc) * inv_);
    }

    View v_;
    HostComm hc_;
    ScoreKind kind_;
    double scale_ = 1.0, inv_ = 1.0;
    std::vector<int> models_;
    std::vector<double> diag_[2];
    LseAcc acc_[2];
};

std::unique_ptr<ScoreState> make_state(const View& v, HostComm hc, LossKind loss, ScoreKind kind,
                                       double max_abs, int64_t b) {
    if (loss == LossKind::sigmoid) return std::make_unique<SigmoidState>(v, hc, max_abs, b);
    return std::make_unique<SoftmaxState>(v, hc, kind);
}

View view_of(const ScoreBlock& blk) {
    View v;
    v.B = blk.B;
    v.row_begin = blk.row_begin;
    v.rows = blk.rows;
    v.L = blk.L.empty() ? nullptr : blk.L.data();
    v.model[0] = blk.learner.empty() ? nullptr : blk.learner.data();
    v.model[1] = blk.reference.empty() ? nullptr : blk.reference.data();
    return v;
}

// The matrices a block must carry, and their sizes.
void check_block(const ScoreBlock& blk, int64_t B, int64_t row_begin, int64_t rows) {
    CC_CHECK(blk.B == B && blk.row_begin == row_begin && blk.rows == rows, "JEST sampler: score block of rows [",
             blk.row_begin, ", ", blk.row_begin + blk.rows, ") of B = ", blk.B, " given, expected rows [",
             row_begin, ", ", row_begin + rows, ") of B = ", B);
    const size_t n = size_t(rows * B);
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

// Local max |x| over the matrices of the block, and whether any value is not finite.
void scan_block(const ScoreBlock& blk, double& max_abs, double& bad) {
    max_abs = 0.0;
    bad = 0.0;
    for (const std::vector<float>* v : {&blk.L, &blk.learner, &blk.reference}) {
        float mx = 0.0f;
        bool nonfinite = false;
        const int64_t n = int64_t(v->size());
        const float* p = v->data();
#pragma omp parallel for schedule(static) reduction(max : mx) reduction(|| : nonfinite) if (n > (1 << 16))
        for (int64_t i = 0; i < n; ++i) {
            const float a = std::fabs(p[i]);
            if (!(a <= std::numeric_limits<float>::max())) nonfinite = true;
            else mx = std::max(mx, a);
        }
        max_abs = std::max(max_abs, double(mx));
        if (nonfinite) bad = 1.0;
    }
}

void select_chunks(ScoreState& st, const JestConfig& cfg, int64_t B, int64_t b, const Philox& rng,
                   std::vector<int64_t>& sel, std::vector<uint8_t>& in_S, std::vector<double>& self) {
    st.first_scores(self);
    auto take = [&](const std::vector<int64_t>& chunk) {
        for (int64_t c : chunk) {
            sel.push_back(c);
            in_S[size_t(c)] = 1;
        }
    };
    switch (cfg.method) {
        case SelectMethod::uniform:
            take(gumbel_top_k(std::vector<double>(size_t(B), 0.0), {}, b, 1.0, rng, 0));
            break;
        case SelectMethod::independent_topk: take(gumbel_top_k(self, {}, b, 1.0, rng, 0, false)); break;
        case SelectMethod::independent_sampled:
            take(gumbel_top_k(self, {}, b, cfg.temperature, rng, 0));
            break;
        case SelectMethod::joint: {
            const int64_t k = b / cfg.chunks;
            std::vector<int64_t> chunk = gumbel_top_k(self, {}, k, cfg.temperature, rng, 0);
            take(chunk);
            std::vector<double> s;
            for (int j = 1; j < cfg.chunks; ++j) {
                st.add(chunk);
                st.scores(in_S, s);
                chunk = gumbel_top_k(s, in_S, k, cfg.temperature, rng, uint64_t(j) * uint64_t(B));
                take(chunk);
            }
            // The last chunk has not been added yet.
            st.add(chunk);
            return;
        }
    }
    st.add(sel);
}

}  // namespace

double gumbel_at(const Philox& rng, uint64_t index) {
    uint32_t w[4];
    rng.block(index, w);
    const uint64_t u64 = (uint64_t(w[0]) << 32) | w[1];
    const double u = (double(u64 >> 11) + 0.5) * (1.0 / 9007199254740992.0);  // (0, 1)
    return -std::log(-std::log(u));
}

std::vector<int64_t> gumbel_top_k(const std::vector<double>& scores, const std::vector<uint8_t>& excluded,
                                  int64_t k, double tau, const Philox& rng, uint64_t offset, bool noise) {
    const int64_t n = int64_t(scores.size());
    CC_CHECK(excluded.empty() || int64_t(excluded.size()) == n, "gumbel_top_k: excluded has ",
             excluded.size(), " entries for ", n, " scores");
    CC_CHECK(tau > 0.0, "gumbel_top_k: temperature must be > 0, got ", tau);
    std::vector<std::pair<double, int64_t>> keys;
    keys.reserve(static_cast<size_t>(n));
    for (int64_t c = 0; c < n; ++c) {
        if (!excluded.empty() && excluded[size_t(c)]) continue;
        const double key = scores[size_t(c)] / tau + (noise ? gumbel_at(rng, offset + uint64_t(c)) : 0.0);
        keys.emplace_back(key, c);
    }
    CC_CHECK(k >= 0 && k <= int64_t(keys.size()), "gumbel_top_k: cannot take ", k, " of ", keys.size(),
             " candidates");
    // Strict total order: larger key first, then smaller index.
    auto before = [](const std::pair<double, int64_t>& a, const std::pair<double, int64_t>& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    if (k < int64_t(keys.size())) std::nth_element(keys.begin(), keys.begin() + k, keys.end(), before);
    keys.resize(static_cast<size_t>(k));
    std::sort(keys.begin(), keys.end(), before);
    std::vector<int64_t> out(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) out[size_t(i)] = keys[size_t(i)].second;
    return out;
}

std::vector<double> conditional_scores(const ScoreBlock& full, const std::vector<int64_t>& S) {
    check_block(full, full.B, 0, full.B);
    double max_abs = 0.0, bad = 0.0;
    scan_block(full, max_abs, bad);
    CC_CHECK(bad == 0.0, "conditional_scores: non-finite score");
    const int64_t b = std::max<int64_t>(int64_t(S.size()), 1);
    auto st = make_state(view_of(full), HostComm{}, full.loss, full.kind, max_abs, b);
    std::vector<double> s;
    if (S.empty()) {
        st->first_scores(s);
        return s;
    }
    std::vector<uint8_t> in_S(size_t(full.B), 0);
    for (int64_t c : S) in_S[size_t(c)] = 1;
    st->add(S);
    st->scores(in_S, s);
    return s;
}

Sampler::Sampler(const JestConfig& cfg, int64_t super_batch, const Communicator* comm)
    : cfg_(cfg), B_(super_batch), comm_(comm) {
    if (comm_) {
        P_ = comm_->size();
        rank_ = comm_->rank();
    }
    cfg_.validate(B_, P_);
    b_ = cfg_.selected_batch(B_);
}

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
            all.resize(part.empty() ? 0 : size_t(B_ * B_));
            if (!part.empty()) comm_->allgather(part.data(), all.data(), part.size());
        };
        gather(block.L, full_.L);
        gather(block.learner, full_.learner);
        gather(block.reference, full_.reference);
        v = view_of(full_);
    } else {
        v = view_of(block);
        // Sharded: the per-chunk all-reduces run even on one rank (nothing to reduce, but
        // the cost is that of the real code path, e.g. for bench_jest_sampler).
        if (cfg_.mode == SelectMode::sharded) hc.comm = comm_;
    }

    auto st = make_state(v, hc, cfg_.loss, cfg_.score, stat[0], b_);
    const Philox rng(cfg_.seed, RngPurpose::jest, step, 0);
    Selection out;
    out.indices.reserve(static_cast<size_t>(b_));
    std::vector<uint8_t> in_S(size_t(B_), 0);
    std::vector<double> self;
    select_chunks(*st, cfg_, B_, b_, rng, out.indices, in_S, self);
    out.batch_score = st->batch_score(out.indices, in_S);
    double ms = 0.0, mb = 0.0;
    for (int64_t c : out.indices) ms += self[size_t(c)];
    for (double x : self) mb += x;
    out.mean_self_score = ms / double(b_);
    out.superbatch_self_score = mb / double(B_);
    return out;
}

}  // namespace curaclip::jest
