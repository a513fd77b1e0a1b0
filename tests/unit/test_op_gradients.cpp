// Float64 finite-difference checks of every backward of backend.h on "cpu-f64".
//
// For an op y = f(x) and a random upstream gradient g, the scalar <g, y> (or the
// loss itself) is differentiated by central differences, h = 1e-6, on a sample
// of coordinates of each input and compared with the analytic backward:
//   rel = |numeric - analytic| / max(|numeric|, |analytic|, 1e-3 max_k |analytic_k|)
// must stay <= 1e-6. (The floor keeps coordinates whose gradient is ~0 from
// turning rounding noise into a large ratio; it is 1e-3 of the tensor's largest
// gradient, so a wrong gradient anywhere still fails.) Differences are taken as
// <g, y(x+h) - y(x-h)>, which keeps the rounding of large sums out of the quotient.
// The losses are one scalar summed over all M x N pairs, whose rounding (a few
// ulp of the loss, / 2h) is ~1e-9 absolute; their ddots checks use a floor of
// 1e-2 of the largest gradient (measured errors there are <= ~6e-7 with 1e-3).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/registry.h"

namespace curaclip {
namespace {

constexpr double kH = 1e-6;
constexpr double kTol = 1e-6;
constexpr int kSamples = 24;
constexpr double kLossFloor = 1e-2;

using Vec = std::vector<double>;

class Fd {
public:
    explicit Fd(uint64_t seed) : be_(make_backend("cpu-f64")), be(*be_), rng_(seed) {}
    ~Fd() {
        for (void* p : mem_) be.free(p);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;

private:
    std::unique_ptr<Backend> be_;

public:
    Backend& be;

    Vec randvec(int64_t n, double lo = -1.0, double hi = 1.0) {
        std::uniform_real_distribution<double> d(lo, hi);
        Vec v(static_cast<size_t>(n));
        for (auto& x : v) x = d(rng_);
        return v;
    }
    Tensor tensor(Shape s, const Vec& v) {
        Tensor t = alloc(s, DType::f64);
        be.upload(t, v.data());
        return t;
    }
    Tensor rand(Shape s, double lo = -1.0, double hi = 1.0) { return tensor(s, randvec(s.numel(), lo, hi)); }
    Tensor zeros(Shape s, DType dt = DType::f64) {
        Tensor t = alloc(s, dt);
        be.memset_zero(t.data, t.bytes());
        return t;
    }
    Tensor ints(Shape s, const std::vector<int32_t>& v) {
        Tensor t = alloc(s, DType::i32);
        be.upload_raw(t, v.data());
        return t;
    }
    Vec get(Tensor t) {
        Vec v(static_cast<size_t>(t.numel()));
        be.download(v.data(), t);
        return v;
    }
    void set(Tensor t, const Vec& v) { be.upload(t, v.data()); }
    std::mt19937_64& rng() { return rng_; }

private:
    Tensor alloc(Shape s, DType dt) {
        void* p = be.alloc(std::max<size_t>(size_t(s.numel()) * dtype_size(dt), 1));
        mem_.push_back(p);
        return Tensor{p, dt, s};
    }
    std::mt19937_64 rng_;
    std::vector<void*> mem_;
};

// Largest relative error of `analytic` against central differences of <g, forward()> over
// a sample of the coordinates of x (all of them when x is small).
double max_rel_error(Fd& fd, Tensor x, const Vec& analytic, const std::function<Vec()>& forward,
                     const Vec& g, double floor = 1e-3) {
    Vec xs = fd.get(x);
    const size_t n = xs.size();
    EXPECT_EQ(analytic.size(), n);
    std::vector<size_t> coords(n);
    std::iota(coords.begin(), coords.end(), 0);
    if (n > size_t(kSamples)) {
        std::shuffle(coords.begin() + 1, coords.end() - 1, fd.rng());
        coords.resize(kSamples - 1);
        coords.push_back(n - 1);  // first, last and a random sample
    }
    double gmax = 0.0;
    for (double a : analytic) gmax = std::max(gmax, std::abs(a));
    double worst = 0.0;
    for (size_t k : coords) {
        const double x0 = xs[k];
        xs[k] = x0 + kH;
        fd.set(x, xs);
        const Vec yp = forward();
        xs[k] = x0 - kH;
        fd.set(x, xs);
        const Vec ym = forward();
        xs[k] = x0;
        fd.set(x, xs);
        EXPECT_EQ(yp.size(), g.size());
        double d = 0.0;
        for (size_t i = 0; i < g.size(); ++i) d += g[i] * (yp[i] - ym[i]);
        const double num = d / (2 * kH);
        const double den = std::max({std::abs(num), std::abs(analytic[k]), floor * gmax, 1e-300});
        worst = std::max(worst, std::abs(num - analytic[k]) / den);
    }
    return worst;
}

void expect_grad(Fd& fd, const std::string& what, Tensor x, const Vec& analytic,
                 const std::function<Vec()>& forward, const Vec& g, double floor = 1e-3) {
    const double err = max_rel_error(fd, x, analytic, forward, g, floor);
    std::printf("  %-44s max rel err %.2e\n", what.c_str(), err);
    EXPECT_LE(err, kTol) << what;
}

TEST(OpGradients, Linear) {
    for (bool bias : {true, false}) {
        Fd fd(1);
        const int64_t N = 5, C = 7, OC = 4;
        Tensor inp = fd.rand({N, C}), w = fd.rand({OC, C}), b = bias ? fd.rand({OC}) : Tensor{};
        Tensor out = fd.zeros({N, OC});
        const Vec g = fd.randvec(N * OC);
        auto fwd = [&] {
            fd.be.linear_forward(out, inp, w, b);
            return fd.get(out);
        };
        Tensor dinp = fd.zeros({N, C}), dw = fd.zeros({OC, C}), db = bias ? fd.zeros({OC}) : Tensor{};
        fd.be.linear_backward(dinp, dw, db, fd.tensor({N, OC}, g), inp, w);
        const std::string tag = bias ? "linear " : "linear (no bias) ";
        expect_grad(fd, tag + "dinp", inp, fd.get(dinp), fwd, g);
        expect_grad(fd, tag + "dweight", w, fd.get(dw), fwd, g);
        if (bias) expect_grad(fd, tag + "dbias", b, fd.get(db), fwd, g);
    }
}

// matmul has no backward op: its gradients are matmuls, as the model code writes them.
TEST(OpGradients, MatmulBothTransposeFlags) {
    for (int flags = 0; flags < 4; ++flags) {
        const bool ta = flags & 1, tb = flags & 2;
        Fd fd(2 + flags);
        const int64_t M = 4, N = 5, K = 3;
        const float alpha = 0.75f;
        Tensor a = ta ? fd.rand({K, M}) : fd.rand({M, K});
        Tensor b = tb ? fd.rand({N, K}) : fd.rand({K, N});
        Tensor out = fd.zeros({M, N});
        const Vec g = fd.randvec(M * N);
        Tensor gt = fd.tensor({M, N}, g);
        auto fwd = [&] {
            fd.be.matmul(out, a, b, ta, tb, alpha, 0.0f);
            return fd.get(out);
        };
        Tensor da = fd.zeros(a.shape), db = fd.zeros(b.shape);
        if (!ta) fd.be.matmul(da, gt, b, false, !tb, alpha, 1.0f);  // da = g op(b)^T
        else fd.be.matmul(da, b, gt, tb, true, alpha, 1.0f);         // da = op(b) g^T
        if (!tb) fd.be.matmul(db, a, gt, !ta, false, alpha, 1.0f);  // db = op(a)^T g
        else fd.be.matmul(db, gt, a, true, ta, alpha, 1.0f);         // db = g^T op(a)
        const std::string tag = std::string("matmul") + (ta ? " tA" : "") + (tb ? " tB" : "");
        expect_grad(fd, tag + " da", a, fd.get(da), fwd, g);
        expect_grad(fd, tag + " db", b, fd.get(db), fwd, g);
    }
}

TEST(OpGradients, LayerNorm) {
    Fd fd(10);
    const int64_t N = 4, C = 9;
    Tensor inp = fd.rand({N, C}, -2.0, 3.0), w = fd.rand({C}), b = fd.rand({C});
    Tensor out = fd.zeros({N, C}), mean = fd.zeros({N}), rstd = fd.zeros({N});
    const Vec g = fd.randvec(N * C);
    auto fwd = [&] {
        fd.be.layernorm_forward(out, mean, rstd, inp, w, b);
        return fd.get(out);
    };
    fwd();
    Tensor dinp = fd.zeros({N, C}), dw = fd.zeros({C}), db = fd.zeros({C});
    fd.be.layernorm_backward(dinp, dw, db, fd.tensor({N, C}, g), inp, w, mean, rstd);
    expect_grad(fd, "layernorm dinp", inp, fd.get(dinp), fwd, g);
    expect_grad(fd, "layernorm dweight", w, fd.get(dw), fwd, g);
    expect_grad(fd, "layernorm dbias", b, fd.get(db), fwd, g);
}

TEST(OpGradients, Activations) {
    for (Activation act : {Activation::gelu, Activation::quick_gelu}) {
        Fd fd(11);
        const int64_t n = 40;
        Tensor inp = fd.rand({n}, -4.0, 4.0), out = fd.zeros({n});
        const Vec g = fd.randvec(n);
        auto fwd = [&] {
            fd.be.activation_forward(out, inp, act);
            return fd.get(out);
        };
        Tensor dinp = fd.zeros({n});
        fd.be.activation_backward(dinp, fd.tensor({n}, g), inp, act);
        expect_grad(fd, act == Activation::gelu ? "gelu dinp" : "quick_gelu dinp", inp, fd.get(dinp),
                    fwd, g);
    }
}

TEST(OpGradients, L2Normalize) {
    Fd fd(12);
    const int64_t N = 3, D = 8;
    Tensor inp = fd.rand({N, D}), out = fd.zeros({N, D}), norms = fd.zeros({N});
    const Vec g = fd.randvec(N * D);
    auto fwd = [&] {
        fd.be.l2_normalize_forward(out, norms, inp);
        return fd.get(out);
    };
    fwd();
    Tensor dinp = fd.zeros({N, D});
    fd.be.l2_normalize_backward(dinp, fd.tensor({N, D}, g), out, norms);
    expect_grad(fd, "l2_normalize dinp", inp, fd.get(dinp), fwd, g);
}

TEST(OpGradients, Attention) {
    for (bool causal : {false, true}) {
        Fd fd(13);
        const int64_t B = 2, T = 5, C = 6;
        const int NH = 2;
        Tensor qkv = fd.rand({B, T, 3 * C}, -1.5, 1.5), out = fd.zeros({B, T, C}), stats = fd.zeros({B, NH, T});
        const Vec g = fd.randvec(B * T * C);
        auto fwd = [&] {
            fd.be.attention_forward(out, stats, qkv, NH, causal);
            return fd.get(out);
        };
        fwd();
        Tensor dqkv = fd.zeros({B, T, 3 * C});
        fd.be.attention_backward(dqkv, fd.tensor({B, T, C}, g), qkv, out, stats, NH, causal);
        expect_grad(fd, causal ? "attention (causal) dqkv" : "attention dqkv", qkv, fd.get(dqkv), fwd, g);
    }
}

TEST(OpGradients, Embedding) {
    Fd fd(14);
    const int64_t B = 2, T = 4, C = 3, V = 5, Tmax = 6;
    Tensor tok = fd.ints({B, T}, {1, 3, 3, 0, 4, 1, 1, 2});  // repeated ids accumulate
    Tensor wte = fd.rand({V, C}), wpe = fd.rand({Tmax, C}), out = fd.zeros({B, T, C});
    const Vec g = fd.randvec(B * T * C);
    auto fwd = [&] {
        fd.be.embedding_forward(out, tok, wte, wpe);
        return fd.get(out);
    };
    Tensor dwte = fd.zeros({V, C}), dwpe = fd.zeros({Tmax, C});
    fd.be.embedding_backward(dwte, dwpe, fd.tensor({B, T, C}, g), tok);
    expect_grad(fd, "embedding dwte", wte, fd.get(dwte), fwd, g);
    expect_grad(fd, "embedding dwpe", wpe, fd.get(dwpe), fwd, g);
}

TEST(OpGradients, VitEmbed) {
    Fd fd(15);
    const int64_t B = 2, P = 4, C = 3, T = P + 1;
    Tensor patches = fd.rand({B, P, C}), cls = fd.rand({C}), pos = fd.rand({T, C}), out = fd.zeros({B, T, C});
    const Vec g = fd.randvec(B * T * C);
    auto fwd = [&] {
        fd.be.vit_embed_forward(out, patches, cls, pos);
        return fd.get(out);
    };
    Tensor dp = fd.zeros({B, P, C}), dc = fd.zeros({C}), dq = fd.zeros({T, C});
    fd.be.vit_embed_backward(dp, dc, dq, fd.tensor({B, T, C}, g));
    expect_grad(fd, "vit_embed dpatches", patches, fd.get(dp), fwd, g);
    expect_grad(fd, "vit_embed dcls", cls, fd.get(dc), fwd, g);
    expect_grad(fd, "vit_embed dpos", pos, fd.get(dq), fwd, g);
}

TEST(OpGradients, GatherRows) {
    Fd fd(16);
    const int64_t B = 3, T = 4, C = 5;
    Tensor x = fd.rand({B, T, C}), idx = fd.ints({B}, {3, 0, 2}), out = fd.zeros({B, C});
    const Vec g = fd.randvec(B * C);
    auto fwd = [&] {
        fd.be.gather_rows(out, x, idx);
        return fd.get(out);
    };
    Tensor dx = fd.zeros({B, T, C});
    fd.be.gather_rows_backward(dx, fd.tensor({B, C}, g), idx);
    expect_grad(fd, "gather_rows dx", x, fd.get(dx), fwd, g);
}

TEST(OpGradients, SoftmaxXentRows) {
    struct Case {
        int64_t M, N, off;
        float w;
    };
    for (Case c : {Case{4, 4, 0, 1.0f}, Case{3, 7, 2, 0.5f}}) {
        Fd fd(17);
        Tensor dots = fd.rand({c.M, c.N}), t = fd.tensor({1}, {std::log(1 / 0.07) - 0.5});
        Tensor loss = fd.zeros({1});
        auto fwd = [&] {
            fd.be.fill(loss, 0.0f);
            fd.be.softmax_xent_rows(loss, Tensor{}, Tensor{}, dots, t, c.off, c.w);
            return fd.get(loss);
        };
        Tensor ddots = fd.zeros({c.M, c.N}), dscale = fd.zeros({1});
        fd.be.softmax_xent_rows(fd.zeros({1}), ddots, dscale, dots, t, c.off, c.w);
        const std::string tag = "softmax_xent " + std::to_string(c.M) + "x" + std::to_string(c.N) +
                                " off" + std::to_string(c.off);
        expect_grad(fd, tag + " ddots", dots, fd.get(ddots), fwd, {1.0}, kLossFloor);
        expect_grad(fd, tag + " dlogit_scale", t, fd.get(dscale), fwd, {1.0});
    }
}

TEST(OpGradients, SigmoidPairwiseRows) {
    struct Case {
        int64_t M, N, off;
        float w;
        double bias;
    };
    for (Case c : {Case{4, 4, 0, 1.0f, -2.0}, Case{3, 8, 5, 0.5f, 0.7}}) {
        Fd fd(18);
        Tensor dots = fd.rand({c.M, c.N}), t = fd.tensor({1}, {std::log(10.0)});
        Tensor b = fd.tensor({1}, {c.bias}), loss = fd.zeros({1});
        auto fwd = [&] {
            fd.be.fill(loss, 0.0f);
            fd.be.sigmoid_pairwise_rows(loss, Tensor{}, Tensor{}, Tensor{}, dots, t, b, c.off, c.w);
            return fd.get(loss);
        };
        Tensor ddots = fd.zeros({c.M, c.N}), dscale = fd.zeros({1}), dbias = fd.zeros({1});
        fd.be.sigmoid_pairwise_rows(fd.zeros({1}), ddots, dscale, dbias, dots, t, b, c.off, c.w);
        const std::string tag = "sigmoid_pairwise " + std::to_string(c.M) + "x" + std::to_string(c.N) +
                                " off" + std::to_string(c.off);
        expect_grad(fd, tag + " ddots", dots, fd.get(ddots), fwd, {1.0}, kLossFloor);
        expect_grad(fd, tag + " dlogit_scale", t, fd.get(dscale), fwd, {1.0});
        expect_grad(fd, tag + " dlogit_bias", b, fd.get(dbias), fwd, {1.0});
    }
}

// The check can fail: a slightly wrong gradient exceeds the tolerance.
TEST(OpGradients, DetectsWrongGradients) {
    Fd fd(19);
    const int64_t n = kSamples;  // every coordinate is checked
    Tensor inp = fd.rand({n}, -3.0, 3.0), out = fd.zeros({n});
    const Vec g = fd.randvec(n);
    auto fwd = [&] {
        fd.be.activation_forward(out, inp, Activation::gelu);
        return fd.get(out);
    };
    Tensor right = fd.zeros({n}), wrong = fd.zeros({n});
    fd.be.activation_backward(right, fd.tensor({n}, g), inp, Activation::gelu);
    fd.be.activation_backward(wrong, fd.tensor({n}, g), inp, Activation::quick_gelu);
    EXPECT_LE(max_rel_error(fd, inp, fd.get(right), fwd, g), kTol);
    EXPECT_GT(max_rel_error(fd, inp, fd.get(wrong), fwd, g), kTol);  // the other activation
    Vec off = fd.get(right);
    off[n / 2] *= 1.0 + 1e-5;  // one coordinate 1e-5 relative off
    EXPECT_GT(max_rel_error(fd, inp, off, fwd, g), kTol);
    off = fd.get(right);
    off[0] *= 2.0;  // a gradient not accumulated once (x2) at the first coordinate
    EXPECT_GT(max_rel_error(fd, inp, off, fwd, g), kTol);
}

}  // namespace
}  // namespace curaclip
