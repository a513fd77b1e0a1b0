// Per-op parity harness (in the spirit of ggml's test-backend-ops): every op of
// backend.h, on several shapes, runs on fresh random inputs on every registered
// and available backend and is compared with the float64 CPU reference
// ("cpu-f64") by the normalized error NMSE = sum (a - b)^2 / sum b^2.
// Tolerance by the tested backend's dtype: f32 1e-10 (~1e-5 relative), bf16 1e-4.
//
// Inputs are drawn on the host, rounded to the tested dtype and given to both
// backends, so the comparison measures the op, not the input rounding.
// Forward outputs are pre-filled with NaN (an element an op forgets to write
// shows up as NaN). Gradient outputs are pre-filled with random values and the
// accumulate rule (backward ops add, +=) is checked on every backend, the
// reference included, by running the same case again with zeroed gradients.
//
// A new backend (e.g. "cuda") is picked up from registered_backends() with no
// change here; one whose unavailable_reason() is non-empty is skipped.
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/curation_ops.h"
#include "backend/registry.h"
#include "cpu/cpu_backend.h"

namespace curaclip {
namespace {

constexpr const char* kReference = "cpu-f64";

double tolerance(DType dt) {
    switch (dt) {
        case DType::f32: return 1e-10;
        case DType::bf16: return 1e-4;
        default: return 1e-20;  // f64 against itself (accumulate check of the reference)
    }
}

// Round-to-nearest-even into bfloat16, returned as double.
double round_bf16(double x) {
    const float f = float(x);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    float r;
    std::memcpy(&r, &u, 4);
    return r;
}
double round_to(DType dt, double x) {
    if (dt == DType::f32) return double(float(x));
    if (dt == DType::bf16) return round_bf16(x);
    return x;
}

// NMSE of `got` against `ref`; infinite on a size mismatch or any non-finite value.
double nmse(const std::vector<double>& got, const std::vector<double>& ref) {
    if (got.size() != ref.size()) return std::numeric_limits<double>::infinity();
    double err = 0.0, den = 0.0;
    for (size_t i = 0; i < got.size(); ++i) {
        if (!std::isfinite(got[i]) || !std::isfinite(ref[i]))
            return std::numeric_limits<double>::infinity();
        err += (got[i] - ref[i]) * (got[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    if (den == 0.0) return err == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
    return err / den;
}

enum class Kind { output, accum, inout };

struct Result {
    std::string name;
    Kind kind;
    Tensor t;
    std::vector<double> prefill;  // accum: what the tensor held before the op
    std::vector<double> values;   // after the op
};

// Builds a case's tensors on one backend. The same calls in the same order draw the same
// numbers on every backend; gradient prefills come from a separate stream, so zeroing them
// (prefill_grads = false) leaves every input unchanged.
class OpEnv {
public:
    OpEnv(Backend& be, uint64_t seed, DType quant, bool prefill_grads)
        : be(be), rng_(seed), grad_rng_(seed ^ 0x9e3779b97f4a7c15ull), quant_(quant),
          prefill_(prefill_grads) {}
    ~OpEnv() {
        for (void* p : mem_) be.free(p);
    }
    OpEnv(const OpEnv&) = delete;
    OpEnv& operator=(const OpEnv&) = delete;

    Backend& be;

    DType dt() const { return be.dtype(); }
    // Saved statistics, accumulators and device scalars: at least f32.
    DType stat() const { return be.dtype() == DType::f64 ? DType::f64 : DType::f32; }

    Tensor rand(Shape s, double lo = -1.0, double hi = 1.0) { return rand_as(s, dt(), lo, hi); }
    Tensor rand_as(Shape s, DType dtype, double lo = -1.0, double hi = 1.0) {
        Tensor t = alloc(s, dtype);
        be.upload(t, draw(rng_, s.numel(), lo, hi).data());
        return t;
    }
    Tensor scalar(double v, DType dtype) {
        Tensor t = alloc({1}, dtype);
        const double q = round_to(quant_, v);
        be.upload(t, &q);
        return t;
    }
    Tensor zeros(Shape s, DType dtype) {
        Tensor t = alloc(s, dtype);
        be.memset_zero(t.data, t.bytes());
        return t;
    }
    Tensor ints(Shape s, int lo, int hi) {
        std::vector<int32_t> v(size_t(s.numel()));
        std::uniform_int_distribution<int> d(lo, hi - 1);
        for (auto& x : v) x = d(rng_);
        return ints_from(s, v);
    }
    Tensor ints_from(Shape s, const std::vector<int32_t>& v) {
        Tensor t = alloc(s, DType::i32);
        be.upload_raw(t, v.data());
        return t;
    }
    Tensor bytes(Shape s) {
        std::vector<uint8_t> v(size_t(s.numel()));
        std::uniform_int_distribution<int> d(0, 255);
        for (auto& x : v) x = uint8_t(d(rng_));
        Tensor t = alloc(s, DType::u8);
        be.upload_raw(t, v.data());
        return t;
    }
    // A forward output: NaN before the op, compared after it.
    Tensor output(const std::string& name, Shape s, DType dtype) {
        Tensor t = alloc(s, dtype);
        if (dtype == DType::i32) {
            std::vector<int32_t> v(size_t(s.numel()), -12345);
            be.upload_raw(t, v.data());
        } else {
            std::vector<double> v(size_t(s.numel()), std::numeric_limits<double>::quiet_NaN());
            be.upload(t, v.data());
        }
        results_.push_back({name, Kind::output, t, {}, {}});
        return t;
    }
    Tensor output(const std::string& name, Shape s) { return output(name, s, dt()); }
    // A gradient (or accumulator) the op adds to: random or zero before, compared after.
    Tensor grad(const std::string& name, Shape s, DType dtype) {
        Tensor t = alloc(s, dtype);
        std::vector<double> v = draw(grad_rng_, s.numel(), -1.0, 1.0);
        if (!prefill_) std::fill(v.begin(), v.end(), 0.0);
        be.upload(t, v.data());
        results_.push_back({name, Kind::accum, t, v, {}});
        return t;
    }
    Tensor grad(const std::string& name, Shape s) { return grad(name, s, dt()); }
    // An input the op updates in place (matmul with beta, optimizer state, fill, ...).
    Tensor inout(const std::string& name, Tensor t) {
        results_.push_back({name, Kind::inout, t, {}, {}});
        return t;
    }

    std::vector<Result>& collect() {
        be.synchronize();
        for (auto& r : results_) {
            r.values.resize(size_t(r.t.numel()));
            if (r.t.dtype == DType::i32) {
                std::vector<int32_t> v(r.values.size());
                be.download_raw(v.data(), r.t);
                for (size_t i = 0; i < v.size(); ++i) r.values[i] = v[i];
            } else {
                be.download(r.values.data(), r.t);
            }
        }
        return results_;
    }

private:
    Tensor alloc(Shape s, DType dtype) {
        void* p = be.alloc(std::max<size_t>(size_t(s.numel()) * dtype_size(dtype), 1));
        mem_.push_back(p);
        return Tensor{p, dtype, s};
    }
    std::vector<double> draw(std::mt19937_64& rng, int64_t n, double lo, double hi) {
        std::uniform_real_distribution<double> d(lo, hi);
        std::vector<double> v(static_cast<size_t>(n));
        for (auto& x : v) x = round_to(quant_, d(rng));
        return v;
    }

    std::mt19937_64 rng_, grad_rng_;
    DType quant_;
    bool prefill_;
    std::vector<void*> mem_;
    std::vector<Result> results_;
};

struct OpCase {
    std::string op, shape;
    std::function<void(OpEnv&)> run;
};

std::string dims(Shape s) {
    std::string r;
    for (int i = 0; i < s.ndim; ++i) {
        if (i) r += 'x';
        r += std::to_string(s.d[i]);
    }
    return r;
}
std::string dims(std::initializer_list<int64_t> v) {
    std::string s;
    for (int64_t x : v) {
        if (!s.empty()) s += 'x';
        s += std::to_string(x);
    }
    return s;
}

// ---- the case table -------------------------------------------------------------------
std::vector<OpCase> make_cases() {
    std::vector<OpCase> c;
    auto add = [&](std::string op, std::string shape, std::function<void(OpEnv&)> f) {
        c.push_back({std::move(op), std::move(shape), std::move(f)});
    };

    // elementwise and reductions
    add("fill", "37x5", [](OpEnv& e) { e.be.fill(e.output("x", {37, 5}), 0.37f); });
    add("fill", "1", [](OpEnv& e) { e.be.fill(e.output("x", {1}, e.stat()), -2.5f); });
    add("copy", "129", [](OpEnv& e) { e.be.copy(e.output("dst", {129}), e.rand({129})); });
    add("copy", "3x4x5", [](OpEnv& e) { e.be.copy(e.output("dst", {3, 4, 5}), e.rand({3, 4, 5})); });
    add("add", "17x33", [](OpEnv& e) {
        e.be.add(e.output("out", {17, 33}), e.rand({17, 33}), e.rand({17, 33}));
    });
    add("add", "17x33 out=a", [](OpEnv& e) {
        Tensor a = e.inout("out", e.rand({17, 33}));
        e.be.add(a, a, e.rand({17, 33}));
    });
    for (Shape s : {Shape{3, 7, 11}, Shape{1}})
        add("accumulate", dims(s), [s](OpEnv& e) { e.be.accumulate(e.grad("dst", s), e.rand(s)); });
    add("scale", "1000", [](OpEnv& e) { e.be.scale(e.inout("x", e.rand({1000})), -0.7f); });
    for (int64_t n : {1, 33 * 65, 100003})
        add("sum_squares", std::to_string(n), [n](OpEnv& e) {
            e.be.sum_squares(e.grad("out", {1}, e.stat()), e.rand({n}));
        });
    add("clamp", "257", [](OpEnv& e) { e.be.clamp(e.inout("x", e.rand({257})), -0.3f, 0.5f); });

    // matrix products
    struct Mm {
        int64_t M, N, K;
        bool ta, tb;
        float alpha, beta;
    };
    for (Mm m : {Mm{7, 9, 5, false, false, 1, 0}, Mm{7, 9, 5, true, false, 1, 0},
                 Mm{7, 9, 5, false, true, 1, 0}, Mm{7, 9, 5, true, true, 1, 0},
                 Mm{33, 17, 65, false, true, 0.5f, 0.75f}, Mm{1, 1, 1, true, false, 2, 1},
                 Mm{64, 3, 130, true, true, -1, 0.25f}}) {
        const std::string name = dims({m.M, m.N, m.K}) + (m.ta ? " tA" : "") + (m.tb ? " tB" : "") +
                                  (m.beta != 0 ? " beta" : "");
        add("matmul", name, [m](OpEnv& e) {
            Tensor a = m.ta ? e.rand({m.K, m.M}) : e.rand({m.M, m.K});
            Tensor b = m.tb ? e.rand({m.N, m.K}) : e.rand({m.K, m.N});
            Tensor out = m.beta != 0 ? e.inout("out", e.rand({m.M, m.N})) : e.output("out", {m.M, m.N});
            e.be.matmul(out, a, b, m.ta, m.tb, m.alpha, m.beta);
        });
    }
    struct Lin {
        int64_t N, C, OC;
        bool bias;
    };
    for (Lin l : {Lin{13, 31, 17, true}, Lin{13, 31, 17, false}, Lin{1, 64, 3, true},
                  Lin{70, 129, 65, true}}) {
        const std::string shape = dims({l.N, l.C, l.OC}) + (l.bias ? "" : " no-bias");
        add("linear_forward", shape, [l](OpEnv& e) {
            Tensor inp = e.rand({l.N, l.C}), w = e.rand({l.OC, l.C});
            Tensor b = l.bias ? e.rand({l.OC}) : Tensor{};
            e.be.linear_forward(e.output("out", {l.N, l.OC}), inp, w, b);
        });
    }
    for (int mask : {7, 1, 6, 4}) {  // bits: dinp, dweight, dbias
        const Lin l = mask == 7 ? Lin{13, 31, 17, true} : Lin{70, 129, 65, true};
        const std::string shape = dims({l.N, l.C, l.OC}) + (mask & 1 ? "" : " -dinp") +
                                  (mask & 2 ? "" : " -dweight") + (mask & 4 ? "" : " -dbias");
        add("linear_backward", shape, [l, mask](OpEnv& e) {
            Tensor inp = e.rand({l.N, l.C}), w = e.rand({l.OC, l.C}), dout = e.rand({l.N, l.OC});
            Tensor dinp = mask & 1 ? e.grad("dinp", {l.N, l.C}) : Tensor{};
            Tensor dw = mask & 2 ? e.grad("dweight", {l.OC, l.C}) : Tensor{};
            Tensor db = mask & 4 ? e.grad("dbias", {l.OC}) : Tensor{};
            e.be.linear_backward(dinp, dw, db, dout, inp, w);
        });
    }

    // normalization and activations
    for (Shape s : {Shape{13, 31}, Shape{2, 5, 64}, Shape{1, 1}}) {
        const int64_t N = s.rows(), C = s.cols();
        add("layernorm_forward", dims(s), [s, N, C](OpEnv& e) {
            Tensor inp = e.rand(s, -2.0, 3.0), w = e.rand({C}), b = e.rand({C});
            e.be.layernorm_forward(e.output("out", s), e.output("mean", {N}, e.stat()),
                                   e.output("rstd", {N}, e.stat()), inp, w, b);
        });
    }
    for (int mask : {7, 1, 6}) {
        const Shape s = mask == 7 ? Shape{13, 31} : Shape{2, 5, 64};
        const int64_t N = s.rows(), C = s.cols();
        const std::string shape =
            dims(s) + (mask & 1 ? "" : " -dinp") + (mask & 2 ? "" : " -dweight") + (mask & 4 ? "" : " -dbias");
        add("layernorm_backward", shape, [s, N, C, mask](OpEnv& e) {
            Tensor inp = e.rand(s, -2.0, 3.0), w = e.rand({C}), b = e.rand({C}), dout = e.rand(s);
            Tensor out = e.zeros(s, e.dt()), mean = e.zeros({N}, e.stat()), rstd = e.zeros({N}, e.stat());
            e.be.layernorm_forward(out, mean, rstd, inp, w, b);
            Tensor dinp = mask & 1 ? e.grad("dinp", s) : Tensor{};
            Tensor dw = mask & 2 ? e.grad("dweight", {C}) : Tensor{};
            Tensor db = mask & 4 ? e.grad("dbias", {C}) : Tensor{};
            e.be.layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd);
        });
    }
    for (Activation act : {Activation::gelu, Activation::quick_gelu}) {
        const std::string an = act == Activation::gelu ? " gelu" : " quick_gelu";
        for (Shape s : {Shape{3, 77}, Shape{5}}) {
            add("activation_forward", dims(s) + an, [s, act](OpEnv& e) {
                e.be.activation_forward(e.output("out", s), e.rand(s, -5.0, 5.0), act);
            });
            add("activation_backward", dims(s) + an, [s, act](OpEnv& e) {
                Tensor inp = e.rand(s, -5.0, 5.0), dout = e.rand(s);
                e.be.activation_backward(e.grad("dinp", s), dout, inp, act);
            });
        }
    }
    for (Shape s : {Shape{7, 33}, Shape{1, 512}, Shape{4, 3}}) {
        const int64_t N = s.rows();
        add("l2_normalize_forward", dims(s), [s, N](OpEnv& e) {
            e.be.l2_normalize_forward(e.output("out", s), e.output("norms", {N}, e.stat()), e.rand(s));
        });
        add("l2_normalize_backward", dims(s), [s, N](OpEnv& e) {
            Tensor inp = e.rand(s), dout = e.rand(s);
            Tensor out = e.zeros(s, e.dt()), norms = e.zeros({N}, e.stat());
            e.be.l2_normalize_forward(out, norms, inp);
            e.be.l2_normalize_backward(e.grad("dinp", s), dout, out, norms);
        });
    }
    add("l2_normalize_forward", "3x4 zero-row", [](OpEnv& e) {
        Tensor inp = e.rand({3, 4});
        e.be.memset_zero(static_cast<char*>(inp.data) + 4 * dtype_size(inp.dtype), 4 * dtype_size(inp.dtype));
        e.be.l2_normalize_forward(e.output("out", {3, 4}), e.output("norms", {3}, e.stat()), inp);
    });

    // attention
    struct Att {
        int64_t B, T, C;
        int NH;
    };
    for (Att a : {Att{2, 7, 12, 3}, Att{1, 13, 16, 2}, Att{3, 5, 6, 1}, Att{2, 1, 8, 2}, Att{1, 77, 64, 4}}) {
        for (bool causal : {false, true}) {
            const std::string shape = dims({a.B, a.T, a.C}) + " h" + std::to_string(a.NH) +
                                      (causal ? " causal" : "");
            add("attention_forward", shape, [a, causal](OpEnv& e) {
                Tensor qkv = e.rand({a.B, a.T, 3 * a.C}, -2.0, 2.0);
                e.be.attention_forward(e.output("out", {a.B, a.T, a.C}),
                                       e.output("stats", {a.B, a.NH, a.T}, e.stat()), qkv, a.NH, causal);
            });
            add("attention_backward", shape, [a, causal](OpEnv& e) {
                Tensor qkv = e.rand({a.B, a.T, 3 * a.C}, -2.0, 2.0), dout = e.rand({a.B, a.T, a.C});
                Tensor out = e.zeros({a.B, a.T, a.C}, e.dt()), stats = e.zeros({a.B, a.NH, a.T}, e.stat());
                e.be.attention_forward(out, stats, qkv, a.NH, causal);
                e.be.attention_backward(e.grad("dqkv", {a.B, a.T, 3 * a.C}), dout, qkv, out, stats,
                                        a.NH, causal);
            });
        }
    }

    // padding-aware bidirectional attention (sentence encoders): lengths from 1 to T,
    // including a full row and a single valid key
    for (Att a : {Att{3, 7, 12, 3}, Att{2, 13, 16, 2}, Att{4, 33, 64, 4}, Att{1, 1, 8, 2}}) {
        add("attention_padded_forward", dims({a.B, a.T, a.C}) + " h" + std::to_string(a.NH), [a](OpEnv& e) {
            std::vector<int32_t> len(size_t(a.B));
            for (int64_t b = 0; b < a.B; ++b) len[size_t(b)] = int32_t(b == 0 ? a.T : 1 + (b * 5) % a.T);
            Tensor qkv = e.rand({a.B, a.T, 3 * a.C}, -2.0, 2.0);
            e.be.attention_padded_forward(e.output("out", {a.B, a.T, a.C}), qkv, e.ints_from({a.B}, len), a.NH);
        });
    }

    // embeddings and token bookkeeping
    struct Emb {
        int64_t B, T, C, V, Tmax;
    };
    for (Emb m : {Emb{3, 7, 10, 11, 9}, Emb{1, 1, 3, 2, 1}, Emb{4, 16, 33, 5, 16}}) {
        const std::string shape = dims({m.B, m.T, m.C}) + " V" + std::to_string(m.V);
        add("embedding_forward", shape, [m](OpEnv& e) {
            Tensor tok = e.ints({m.B, m.T}, 0, int(m.V)), wte = e.rand({m.V, m.C}), wpe = e.rand({m.Tmax, m.C});
            e.be.embedding_forward(e.output("out", {m.B, m.T, m.C}), tok, wte, wpe);
        });
        for (int mask : {3, 1, 2})
            add("embedding_backward", shape + (mask & 1 ? "" : " -dwte") + (mask & 2 ? "" : " -dwpe"),
                [m, mask](OpEnv& e) {
                    Tensor tok = e.ints({m.B, m.T}, 0, int(m.V)), dout = e.rand({m.B, m.T, m.C});
                    Tensor dwte = mask & 1 ? e.grad("dwte", {m.V, m.C}) : Tensor{};
                    Tensor dwpe = mask & 2 ? e.grad("dwpe", {m.Tmax, m.C}) : Tensor{};
                    e.be.embedding_backward(dwte, dwpe, dout, tok);
                });
    }
    struct Pat {
        int64_t B, H, W, Cin;
        int p;
    };
    for (Pat q : {Pat{2, 6, 9, 3, 3}, Pat{1, 4, 4, 1, 2}, Pat{3, 16, 16, 3, 8}}) {
        add("patchify", dims({q.B, q.H, q.W, q.Cin}) + " p" + std::to_string(q.p), [q](OpEnv& e) {
            const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
            const float std_[3] = {0.26862954f, 0.26130258f, 0.27577711f};
            const int64_t P = (q.H / q.p) * (q.W / q.p), K = q.Cin * q.p * q.p;
            e.be.patchify(e.output("out", {q.B * P, K}), e.bytes({q.B, q.H, q.W, q.Cin}), q.p, mean, std_);
        });
    }
    for (bool flat : {false, true}) {
        const int64_t B = 2, P = 4, C = 6, T = P + 1;
        add("vit_embed_forward", dims({B, T, C}) + (flat ? " flat" : ""), [=](OpEnv& e) {
            Tensor patches = flat ? e.rand({B * P, C}) : e.rand({B, P, C});
            e.be.vit_embed_forward(e.output("out", {B, T, C}), patches, e.rand({C}), e.rand({T, C}));
        });
    }
    for (int mask : {7, 5, 2}) {  // bits: dpatches, dcls, dpos
        const int64_t B = 3, P = 9, C = 5, T = P + 1;
        add("vit_embed_backward",
            dims({B, T, C}) + (mask & 1 ? "" : " -dpatches") + (mask & 2 ? "" : " -dcls") + (mask & 4 ? "" : " -dpos"),
            [=](OpEnv& e) {
                Tensor dout = e.rand({B, T, C});
                Tensor dp = mask & 1 ? e.grad("dpatches", {B * P, C}) : Tensor{};
                Tensor dc = mask & 2 ? e.grad("dcls", {C}) : Tensor{};
                Tensor dq = mask & 4 ? e.grad("dpos", {T, C}) : Tensor{};
                e.be.vit_embed_backward(dp, dc, dq, dout);
            });
    }
    add("argmax_rows", "5x9 ties", [](OpEnv& e) {
        // Row 0 has its maximum twice, row 4 is constant: the first one must win.
        const std::vector<int32_t> tok = {3, 9, 1, 9, 0, 0, 0, 0, 0,  49406, 5, 49407, 0, 0, 0, 0, 0, 0,
                                          1, 2, 3, 4, 5, 6, 7, 8, 99, 7, 7, 3, 2, 7, 1, 0, 0, 0,
                                          4, 4, 4, 4, 4, 4, 4, 4, 4};
        e.be.argmax_rows(e.output("idx", {5}, DType::i32), e.ints_from({5, 9}, tok));
    });
    add("argmax_rows", "6x77 random", [](OpEnv& e) {
        e.be.argmax_rows(e.output("idx", {6}, DType::i32), e.ints({6, 77}, 0, 50));
    });
    for (Shape s : {Shape{4, 6, 5}, Shape{1, 1, 7}}) {
        const int64_t B = s[0], T = s[1], C = s[2];
        add("gather_rows", dims(s), [=](OpEnv& e) {
            Tensor x = e.rand(s), idx = e.ints({B}, 0, int(T));
            e.be.gather_rows(e.output("out", {B, C}), x, idx);
        });
        add("gather_rows_backward", dims(s), [=](OpEnv& e) {
            Tensor dout = e.rand({B, C}), idx = e.ints({B}, 0, int(T));
            e.be.gather_rows_backward(e.grad("dx", s), dout, idx);
        });
    }

    // contrastive losses
    struct Loss {
        int64_t M, N, off;
        float w;
        int mask;  // bits: ddots, dscale, dbias
    };
    for (Loss l : {Loss{6, 6, 0, 1.0f, 7}, Loss{3, 8, 5, 0.5f, 7}, Loss{4, 12, 4, 1.0f, 2},
                   Loss{5, 5, 0, 2.0f, 1}, Loss{1, 1, 0, 1.0f, 0}}) {
        const std::string shape = dims({l.M, l.N}) + " off" + std::to_string(l.off) + " w" +
                                  std::to_string(l.w).substr(0, 3) + (l.mask & 1 ? "" : " -ddots") +
                                  (l.mask & 2 ? "" : " -dscale");
        add("softmax_xent_rows", shape, [l](OpEnv& e) {
            Tensor dots = e.rand({l.M, l.N}), t = e.scalar(std::log(1 / 0.07), e.stat());
            Tensor loss = e.grad("loss", {1}, e.stat());
            Tensor dd = l.mask & 1 ? e.output("ddots", {l.M, l.N}) : Tensor{};
            Tensor ds = l.mask & 2 ? e.grad("dscale", {1}, e.stat()) : Tensor{};
            e.be.softmax_xent_rows(loss, dd, ds, dots, t, l.off, l.w);
        });
        add("sigmoid_pairwise_rows", shape + (l.mask & 4 ? "" : " -dbias"), [l](OpEnv& e) {
            Tensor dots = e.rand({l.M, l.N}), t = e.scalar(std::log(10.0), e.stat());
            Tensor b = e.scalar(l.off ? -10.0 : 0.3, e.stat());
            Tensor loss = e.grad("loss", {1}, e.stat());
            Tensor dd = l.mask & 1 ? e.output("ddots", {l.M, l.N}) : Tensor{};
            Tensor ds = l.mask & 2 ? e.grad("dscale", {1}, e.stat()) : Tensor{};
            Tensor db = l.mask & 4 ? e.grad("dbias", {1}, e.stat()) : Tensor{};
            e.be.sigmoid_pairwise_rows(loss, dd, ds, db, dots, t, b, l.off, l.w);
        });
    }

    // JEST: the pairwise sigmoid loss matrix of a row block (logits of both signs, saturated
    // ones included: t = ln 100 with b = -10 or +10 pushes |logit| up to 110).
    struct Nll {
        int64_t M, N, off;
        double t, b;
    };
    for (Nll n : {Nll{6, 6, 0, std::log(10.0), -10.0}, Nll{3, 11, 5, std::log(100.0), 10.0},
                  Nll{1, 1, 0, 0.0, 0.3}, Nll{17, 68, 34, std::log(100.0), -10.0}}) {
        add("pairwise_sigmoid_nll", dims({n.M, n.N}) + " off" + std::to_string(n.off), [n](OpEnv& e) {
            Tensor dots = e.rand({n.M, n.N}), t = e.scalar(n.t, e.stat()), b = e.scalar(n.b, e.stat());
            e.be.curation().pairwise_sigmoid_nll(e.output("nll", {n.M, n.N}), dots, t, b, n.off);
        });
    }
    add("pairwise_sigmoid_nll", "5x9 off2 in-place", [](OpEnv& e) {
        Tensor x = e.inout("nll", e.rand({5, 9}));
        e.be.curation().pairwise_sigmoid_nll(x, x, e.scalar(std::log(10.0), e.stat()), e.scalar(-5.0, e.stat()), 2);
    });

    // optimizer
    for (int64_t step : {1, 7, 1000}) {
        add("adamw_step", "1000 step" + std::to_string(step), [step](OpEnv& e) {
            const int64_t n = 1000;
            Tensor p = e.inout("param", e.rand({n})), g = e.rand({n});
            Tensor m = e.inout("m", step == 1 ? e.zeros({n}, e.stat()) : e.rand_as({n}, e.stat(), -0.1, 0.1));
            Tensor v = e.inout("v", step == 1 ? e.zeros({n}, e.stat()) : e.rand_as({n}, e.stat(), 0.0, 0.02));
            AdamWParams hp;
            hp.lr = 5e-4f;
            hp.weight_decay = step == 7 ? 0.0f : 0.2f;
            hp.step = step;
            // A bf16 backend updates through an f32 master; a zero one disagrees with the
            // random param, so the kernel seeds it from param (ParameterSet's fresh state).
            const Tensor master = e.dt() == DType::bf16 ? e.zeros({n}, DType::f32) : Tensor{};
            e.be.adamw_step(p, g, m, v, master, hp, step == 7 ? 0.5f : 1.0f);
        });
    }
    // k-means (several row blocks with a short last one; one row, one center). The squared
    // norms are those of the centers as stored, as every caller passes them (backend.h);
    // random norms would make backends disagree on near ties for reasons that are not bugs.
    // Exact answers on planted near ties: KmeansAssignExact below.
    struct Km {
        int64_t N, D, K, B;
    };
    for (Km k : {Km{37, 5, 11, 8}, Km{100, 64, 33, 100}, Km{1, 3, 1, 1}, Km{300, 16, 40, 7}}) {
        add("kmeans_assign", dims({k.N, k.D, k.K}) + " B" + std::to_string(k.B), [k](OpEnv& e) {
            Tensor x = e.rand({k.N, k.D}), cen = e.rand({k.K, k.D});
            std::vector<double> c(size_t(k.K * k.D)), n(size_t(k.K), 0.0);
            e.be.download(c.data(), cen);
            for (int64_t i = 0; i < k.K * k.D; ++i) n[size_t(i / k.D)] += c[size_t(i)] * c[size_t(i)];
            Tensor csq = e.zeros({k.K}, e.dt());
            e.be.upload(csq, n.data());
            e.be.curation().kmeans_assign(e.output("assign", {k.N}, DType::i32), e.output("dist", {k.N}), x, cen,
                               csq, e.zeros({k.B, k.K}, e.dt()));
        });
    }
    return c;
}

// ---- running cases --------------------------------------------------------------------
uint64_t case_seed(size_t i) { return 0x5eed0000ull + i * 7919ull; }

std::vector<Result> run_case(Backend& be, const OpCase& c, uint64_t seed, DType quant, bool prefill) {
    OpEnv env(be, seed, quant, prefill);
    c.run(env);
    return env.collect();
}

std::vector<std::string> tested_backends() {
    std::vector<std::string> names;
    for (const auto& f : registered_backends())
        if (f.name != kReference) names.push_back(f.name);
    return names;
}
std::vector<std::string> all_backends() {
    std::vector<std::string> names;
    for (const auto& f : registered_backends()) names.push_back(f.name);
    return names;
}
std::string unavailable(const std::string& name) {
    for (const auto& f : registered_backends())
        if (f.name == name) return f.unavailable_reason();
    return "not registered";
}
std::string test_name(const testing::TestParamInfo<std::string>& info) {
    std::string s = info.param;
    for (char& ch : s)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
    return s;
}

void print_row(const std::string& op, const std::string& shape, const std::string& backend,
               const std::string& what, double err, bool ok) {
    std::printf("  %-22s %-28s %-8s %-9s %10.3e  %s\n", op.c_str(), shape.c_str(), backend.c_str(),
                what.c_str(), err, ok ? "ok" : "FAIL");
}

class BackendOps : public testing::TestWithParam<std::string> {};
class BackendAccumulate : public testing::TestWithParam<std::string> {};

// Every op against the float64 reference.
TEST_P(BackendOps, MatchesReference) {
    const std::string name = GetParam();
    if (const std::string why = unavailable(name); !why.empty())
        GTEST_SKIP() << "backend '" << name << "' unavailable: " << why;
    std::unique_ptr<Backend> be = make_backend(name), ref = make_backend(kReference);
    const DType dt = be->dtype();
    const double tol = tolerance(dt);
    const auto cases = make_cases();
    std::printf("  %-22s %-28s %-8s %-9s %10s  %s\n", "op", "shape", "backend", "output", "NMSE", "ok");
    int failures = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
        const auto got = run_case(*be, cases[i], case_seed(i), dt, true);
        const auto want = run_case(*ref, cases[i], case_seed(i), dt, true);
        ASSERT_EQ(got.size(), want.size()) << cases[i].op;
        for (size_t r = 0; r < got.size(); ++r) {
            const double err = nmse(got[r].values, want[r].values);
            const bool ok = err <= tol;
            print_row(cases[i].op, cases[i].shape, name, got[r].name, err, ok);
            if (!ok) ++failures;
            EXPECT_LE(err, tol) << cases[i].op << " " << cases[i].shape << " output " << got[r].name
                                << " on " << name << " (" << dtype_name(dt) << ")";
        }
    }
    std::printf("  %zu cases on %s, %d outputs over tolerance %.0e\n", cases.size(), name.c_str(),
                failures, tol);
}

// Backward ops and accumulators add to what their outputs held: the result with random
// prefills minus the prefill equals the result with zeroed outputs.
TEST_P(BackendAccumulate, GradientsAreAddedTo) {
    const std::string name = GetParam();
    if (const std::string why = unavailable(name); !why.empty())
        GTEST_SKIP() << "backend '" << name << "' unavailable: " << why;
    std::unique_ptr<Backend> be = make_backend(name);
    const DType dt = be->dtype();
    const auto cases = make_cases();
    int checked = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
        const auto pre = run_case(*be, cases[i], case_seed(i), dt, true);
        const auto zero = run_case(*be, cases[i], case_seed(i), dt, false);
        ASSERT_EQ(pre.size(), zero.size());
        for (size_t r = 0; r < pre.size(); ++r) {
            if (pre[r].kind != Kind::accum) continue;
            std::vector<double> added(pre[r].values.size());
            for (size_t k = 0; k < added.size(); ++k) added[k] = pre[r].values[k] - pre[r].prefill[k];
            const double err = nmse(added, zero[r].values);
            // The prefill must be non-trivial for the check to mean anything.
            double pre_sq = 0.0;
            for (double x : pre[r].prefill) pre_sq += x * x;
            EXPECT_GT(pre_sq, 0.0) << cases[i].op << " " << pre[r].name;
            EXPECT_LE(err, std::max(tolerance(dt), 1e-20))
                << cases[i].op << " " << cases[i].shape << ": " << pre[r].name
                << " is not accumulated into on " << name;
            ++checked;
        }
    }
    std::printf("  %d accumulated outputs checked on %s\n", checked, name.c_str());
    EXPECT_GT(checked, 20);
}

// Memory and host transfers: conversions both ways, raw copies, zeroing, alignment.
TEST_P(BackendAccumulate, TransfersRoundTrip) {
    const std::string name = GetParam();
    if (const std::string why = unavailable(name); !why.empty())
        GTEST_SKIP() << "backend '" << name << "' unavailable: " << why;
    std::unique_ptr<Backend> be = make_backend(name);
    const int64_t n = 1001;
    std::vector<double> host(n);
    for (int64_t i = 0; i < n; ++i) host[size_t(i)] = round_to(be->dtype(), std::sin(0.37 * double(i)) * 3.0);
    void* p = be->alloc(size_t(n) * dtype_size(be->dtype()));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << "alloc is not 64-byte aligned";
    Tensor t;
    t.data = p;
    t.dtype = be->dtype();
    t.shape = Shape{n};
    be->upload(t, host.data());
    std::vector<double> back(n);
    std::vector<float> backf(n);
    be->download(back.data(), t);
    be->download(backf.data(), t);
    be->synchronize();
    EXPECT_EQ(back, host);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(backf[size_t(i)], float(host[size_t(i)]));
    std::vector<float> hf(backf);
    be->upload(t, hf.data());
    be->download(backf.data(), t);
    EXPECT_EQ(backf, hf);
    be->memset_zero(p, t.bytes());
    be->download(back.data(), t);
    EXPECT_EQ(back, std::vector<double>(n, 0.0));
    be->free(p);
    std::vector<int32_t> ids = {0, -7, 49407, 2147483647}, ids_back(4);
    std::vector<uint8_t> px = {0, 1, 128, 255, 7}, px_back(5);
    void* q = be->alloc(16);
    void* r = be->alloc(5);
    be->upload_raw(Tensor{q, DType::i32, {4}}, ids.data());
    be->download_raw(ids_back.data(), Tensor{q, DType::i32, {4}});
    be->upload_raw(Tensor{r, DType::u8, {5}}, px.data());
    be->download_raw(px_back.data(), Tensor{r, DType::u8, {5}});
    EXPECT_EQ(ids_back, ids);
    EXPECT_EQ(px_back, px);
    be->free(q);
    be->free(r);
}

// kmeans_assign on planted near ties, against the exact argmin (issue 16). The NMSE of
// the harness above cannot see one wrong center id among many, so this compares ids and
// distances exactly. Coordinates are multiples of 1/64 below 4 in magnitude (exact in
// bf16, f32 and f64), so every squared distance is an exact multiple of 1/4096. Row j
// sits next to its own pair of centers (2j, 2j+1), far from every other pair:
//   rows 0..7:  center 2j+1 is nearer than 2j by 1/4096 (relative 2^-16 of the norms,
//               below both the fp32 screen's error and the 2^-9 of bf16 norms), and the
//               centers are drawn so that the bf16 rounding of |c_2j|^2 goes down and of
//               |c_2j+1|^2 goes up by more than the screen's margin: a screen with the
//               caller's bf16 norms picks 2j;
//   rows 8..15: both centers at exactly the same distance: the lowest id, 2j, wins.
class KmeansAssignExact : public testing::TestWithParam<std::string> {};

TEST_P(KmeansAssignExact, PlantedNearTiesGiveTheExactArgmin) {
    const std::string name = GetParam();
    if (const std::string why = unavailable(name); !why.empty())
        GTEST_SKIP() << "backend '" << name << "' unavailable: " << why;
    std::unique_ptr<Backend> be = make_backend(name);
    constexpr int64_t D = 64, rows = 16, K = 2 * rows;
    std::mt19937_64 rng(16);
    std::uniform_int_distribution<int> base(-100, 100), step(-1, 1);
    std::vector<int> X(size_t(rows * D)), C(size_t(K * D));
    std::vector<int32_t> want(rows);
    std::vector<double> want_dist(rows);
    auto sq = [](const int* a, const int* b) {
        long s = 0;
        for (int64_t d = 0; d < D; ++d) s += long(a[d] - (b ? b[d] : 0)) * long(a[d] - (b ? b[d] : 0));
        return s;
    };
    for (int64_t j = 0; j < rows; ++j) {
        const bool near = j < rows / 2;
        int* x = &X[size_t(j * D)];
        int* c0 = &C[size_t(2 * j * D)];
        int* c1 = &C[size_t((2 * j + 1) * D)];
        for (int attempt = 0;; ++attempt) {
            ASSERT_LT(attempt, 100000) << "no adversarial draw found";
            for (int64_t d = 0; d < D; ++d) x[d] = base(rng);
            // c0 = x + u, c1 = x + w; w: u reversed with every other sign flipped, so that
            // |w|^2 == |u|^2; for a near tie one +-1 of u becomes 0 in w (|w|^2 = |u|^2 - 1).
            std::vector<int> u(D);
            for (auto& v : u) v = step(rng);
            u[0] = 1;
            for (int64_t d = 0; d < D; ++d) {
                c0[d] = x[d] + u[size_t(d)];
                const int w = u[size_t(D - 1 - d)] * (d % 2 ? -1 : 1);
                c1[d] = x[d] + (near && d == D - 1 ? 0 : w);
            }
            if (!near) break;
            // The bf16 rounding of the squared norms, against the screen's margin (~1e-2 here).
            const double n0 = double(sq(c0, nullptr)) / 4096, n1 = double(sq(c1, nullptr)) / 4096;
            if (round_bf16(n0) - n0 < -0.03 && round_bf16(n1) - n1 > 0.03) break;
        }
        const long d0 = sq(x, c0), d1 = sq(x, c1);
        ASSERT_EQ(d1, near ? d0 - 1 : d0);
        want[size_t(j)] = int32_t(near ? 2 * j + 1 : 2 * j);
        want_dist[size_t(j)] = double(d1) / 4096;
    }
    // Every other pair is much farther: the planted pair decides.
    for (int64_t j = 0; j < rows; ++j) {
        const int* x = &X[size_t(j * D)];
        for (int64_t k = 0; k < K; ++k) {
            if (k / 2 != j) {
                ASSERT_GT(sq(x, &C[size_t(k * D)]), 16 * sq(x, &C[size_t(2 * j * D)]));
            }
        }
    }
    std::vector<double> xh(X.size()), ch(C.size()), nh(size_t(K), 0.0);
    for (size_t i = 0; i < X.size(); ++i) xh[i] = X[i] / 64.0;
    for (size_t i = 0; i < C.size(); ++i) ch[i] = C[i] / 64.0;
    for (int64_t k = 0; k < K; ++k) nh[size_t(k)] = double(sq(&C[size_t(k * D)], nullptr)) / 4096;
    const DType dt = be->dtype();
    auto alloc = [&](Shape s, DType t) { return Tensor{be->alloc(size_t(s.numel()) * dtype_size(t)), t, s}; };
    for (int64_t B : {int64_t(1), int64_t(5), rows}) {
        Tensor x = alloc({rows, D}, dt), cen = alloc({K, D}, dt), csq = alloc({K}, dt);
        Tensor assign = alloc({rows}, DType::i32), dist = alloc({rows}, dt), scratch = alloc({B, K}, dt);
        be->upload(x, xh.data());
        be->upload(cen, ch.data());
        be->upload(csq, nh.data());  // the centers' norms, rounded to the backend's dtype
        be->curation().kmeans_assign(assign, dist, x, cen, csq, scratch);
        std::vector<int32_t> got(rows);
        std::vector<double> got_dist(rows);
        be->download_raw(got.data(), assign);
        be->download(got_dist.data(), dist);
        be->synchronize();
        for (int64_t j = 0; j < rows; ++j) {
            EXPECT_EQ(got[size_t(j)], want[size_t(j)]) << name << " row " << j << " B " << B;
            EXPECT_EQ(got_dist[size_t(j)], want_dist[size_t(j)]) << name << " row " << j << " B " << B;
        }
        for (Tensor t : {x, cen, csq, assign, dist, scratch}) be->free(t.data);
    }
}

INSTANTIATE_TEST_SUITE_P(Registered, BackendOps, testing::ValuesIn(tested_backends()), test_name);
INSTANTIATE_TEST_SUITE_P(Registered, KmeansAssignExact, testing::ValuesIn(all_backends()), test_name);
INSTANTIATE_TEST_SUITE_P(Registered, BackendAccumulate, testing::ValuesIn(all_backends()), test_name);

// The table covers every op of backend.h (update both when an op is added).
TEST(BackendOpsHarness, CoversEveryOp) {
    const std::set<std::string> all = {
        "fill", "copy", "add", "accumulate", "scale", "sum_squares", "matmul", "linear_forward",
        "linear_backward", "layernorm_forward", "layernorm_backward", "activation_forward",
        "activation_backward", "l2_normalize_forward", "l2_normalize_backward", "attention_forward",
        "attention_backward", "attention_padded_forward", "embedding_forward", "embedding_backward", "patchify",
        "vit_embed_forward", "vit_embed_backward", "argmax_rows", "gather_rows",
        "gather_rows_backward", "softmax_xent_rows", "sigmoid_pairwise_rows", "adamw_step", "clamp",
        "kmeans_assign", "pairwise_sigmoid_nll"};
    std::set<std::string> seen;
    for (const auto& c : make_cases()) {
        EXPECT_TRUE(all.count(c.op)) << "unknown op name in the table: " << c.op;
        seen.insert(c.op);
    }
    for (const auto& op : all) EXPECT_TRUE(seen.count(op)) << "op without a parity case: " << op;
}

// The harness can fail: a wrong op, a perturbed output or a missing accumulation all
// exceed the tolerance.
TEST(BackendOpsHarness, DetectsErrors) {
    std::unique_ptr<Backend> be = make_backend("cpu"), ref = make_backend(kReference);
    auto gelu = [](Activation act) {
        return OpCase{"activation_forward", "", [act](OpEnv& e) {
                          e.be.activation_forward(e.output("out", {8, 9}), e.rand({8, 9}, -3, 3), act);
                      }};
    };
    const auto a = run_case(*be, gelu(Activation::gelu), 1, DType::f32, true);
    const auto b = run_case(*ref, gelu(Activation::quick_gelu), 1, DType::f32, true);
    const auto c = run_case(*ref, gelu(Activation::gelu), 1, DType::f32, true);
    EXPECT_LE(nmse(a[0].values, c[0].values), tolerance(DType::f32));
    EXPECT_GT(nmse(a[0].values, b[0].values), tolerance(DType::f32));  // wrong activation
    auto perturbed = c[0].values;
    perturbed[17] *= 1.0 + 1e-3;  // one element off by 1e-3 relative
    EXPECT_GT(nmse(perturbed, c[0].values), tolerance(DType::f32));
    perturbed = c[0].values;
    perturbed[3] = std::numeric_limits<double>::quiet_NaN();  // an element never written
    EXPECT_GT(nmse(perturbed, c[0].values), tolerance(DType::bf16));
    // An op that overwrote instead of adding: pre - prefill != zero-prefill result.
    const OpCase acc{"accumulate", "", [](OpEnv& e) { e.be.accumulate(e.grad("dst", {50}), e.rand({50})); }};
    const auto pre = run_case(*be, acc, 2, DType::f32, true);
    const auto zero = run_case(*be, acc, 2, DType::f32, false);
    EXPECT_GT(nmse(pre[0].values, zero[0].values), tolerance(DType::bf16));
    EXPECT_EQ(round_bf16(1.0 + 1.0 / 256), 1.0);  // ties to even
    EXPECT_EQ(round_bf16(1.0 + 3.0 / 256), 1.0 + 4.0 / 256);
}

// ---- the reference against the spec ----------------------------------------------------
// Parity only shows that backends agree with cpu-f64; these naive loops, written from the
// comments in backend.h (and torch's definitions), check cpu-f64 itself.
std::vector<double> host(Backend& be, Tensor t) {
    std::vector<double> v(size_t(t.numel()));
    be.download(v.data(), t);
    return v;
}
double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
    EXPECT_EQ(a.size(), b.size());
    double m = 0.0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::abs(a[i] - b[i]));
    return m;
}
constexpr double kSpecTol = 1e-12;

TEST(ReferenceSpec, LinearLayerNormActivationsL2) {
    std::unique_ptr<Backend> be = make_backend(kReference);
    OpEnv e(*be, 41, DType::f64, false);
    const int64_t N = 3, C = 5, OC = 4;
    Tensor x = e.rand({N, C}, -2, 2), w = e.rand({OC, C}), b = e.rand({OC}), g = e.rand({C}), bb = e.rand({C});
    const auto X = host(*be, x), W = host(*be, w), B = host(*be, b), G = host(*be, g), BB = host(*be, bb);
    Tensor y = e.zeros({N, OC}, DType::f64);
    be->linear_forward(y, x, w, b);
    std::vector<double> want(N * OC);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < OC; ++o) {
            double acc = B[o];
            for (int64_t c = 0; c < C; ++c) acc += X[n * C + c] * W[o * C + c];
            want[n * OC + o] = acc;
        }
    EXPECT_LE(max_abs_diff(host(*be, y), want), kSpecTol) << "linear";
    Tensor ln = e.zeros({N, C}, DType::f64), mean = e.zeros({N}, DType::f64), rstd = e.zeros({N}, DType::f64);
    be->layernorm_forward(ln, mean, rstd, x, g, bb);
    want.assign(N * C, 0.0);
    for (int64_t n = 0; n < N; ++n) {
        double m = 0, v = 0;
        for (int64_t c = 0; c < C; ++c) m += X[n * C + c] / C;
        for (int64_t c = 0; c < C; ++c) v += (X[n * C + c] - m) * (X[n * C + c] - m) / C;  // biased
        for (int64_t c = 0; c < C; ++c) want[n * C + c] = (X[n * C + c] - m) / std::sqrt(v + 1e-5) * G[c] + BB[c];
    }
    EXPECT_LE(max_abs_diff(host(*be, ln), want), kSpecTol) << "layernorm";
    Tensor act = e.zeros({N, C}, DType::f64);
    be->activation_forward(act, x, Activation::gelu);
    for (size_t i = 0; i < X.size(); ++i) want[i] = 0.5 * X[i] * (1 + std::erf(X[i] / std::sqrt(2.0)));
    EXPECT_LE(max_abs_diff(host(*be, act), want), kSpecTol) << "gelu";
    be->activation_forward(act, x, Activation::quick_gelu);
    for (size_t i = 0; i < X.size(); ++i) want[i] = X[i] / (1 + std::exp(-1.702 * X[i]));
    EXPECT_LE(max_abs_diff(host(*be, act), want), kSpecTol) << "quick_gelu";
    Tensor l2 = e.zeros({N, C}, DType::f64), norms = e.zeros({N}, DType::f64);
    be->l2_normalize_forward(l2, norms, x);
    for (int64_t n = 0; n < N; ++n) {
        double s = 0;
        for (int64_t c = 0; c < C; ++c) s += X[n * C + c] * X[n * C + c];
        for (int64_t c = 0; c < C; ++c) want[n * C + c] = X[n * C + c] / std::sqrt(s);
    }
    EXPECT_LE(max_abs_diff(host(*be, l2), want), kSpecTol) << "l2_normalize";
}

TEST(ReferenceSpec, Attention) {
    std::unique_ptr<Backend> be = make_backend(kReference);
    for (bool causal : {false, true}) {
        OpEnv e(*be, 42, DType::f64, false);
        const int64_t B = 2, T = 4, C = 6, NH = 2, hs = C / NH;
        Tensor qkv = e.rand({B, T, 3 * C}, -2, 2), out = e.zeros({B, T, C}, DType::f64);
        Tensor stats = e.zeros({B, NH, T}, DType::f64);
        be->attention_forward(out, stats, qkv, int(NH), causal);
        const auto Q = host(*be, qkv);
        std::vector<double> want(B * T * C), lse(B * NH * T);
        for (int64_t b = 0; b < B; ++b)
            for (int64_t h = 0; h < NH; ++h)
                for (int64_t i = 0; i < T; ++i) {
                    std::vector<double> s(T, -INFINITY);
                    double mx = -INFINITY, sum = 0;
                    for (int64_t j = 0; j < (causal ? i + 1 : T); ++j) {
                        s[j] = 0;
                        for (int64_t d = 0; d < hs; ++d)
                            s[j] += Q[(b * T + i) * 3 * C + h * hs + d] * Q[(b * T + j) * 3 * C + C + h * hs + d];
                        s[j] /= std::sqrt(double(hs));
                        mx = std::max(mx, s[j]);
                    }
                    for (int64_t j = 0; j < T; ++j) sum += std::exp(s[j] - mx);
                    lse[(b * NH + h) * T + i] = mx + std::log(sum);
                    for (int64_t d = 0; d < hs; ++d) {
                        double acc = 0;
                        for (int64_t j = 0; j < T; ++j)
                            acc += std::exp(s[j] - mx) / sum * Q[(b * T + j) * 3 * C + 2 * C + h * hs + d];
                        want[(b * T + i) * C + h * hs + d] = acc;
                    }
                }
        EXPECT_LE(max_abs_diff(host(*be, out), want), kSpecTol) << "attention causal=" << causal;
        EXPECT_LE(max_abs_diff(host(*be, stats), lse), kSpecTol) << "attention stats causal=" << causal;
    }
}

TEST(ReferenceSpec, EmbeddingsAndPatches) {
    std::unique_ptr<Backend> be = make_backend(kReference);
    OpEnv e(*be, 43, DType::f64, false);
    // patchify: u8 HWC -> rows over the patch grid, columns c*p*p + ky*p + kx.
    const int64_t B = 2, H = 4, W = 6, Ci = 3, p = 2, gw = W / p, P = (H / p) * gw;
    const float mean[3] = {0.1f, 0.5f, 0.9f}, sd[3] = {0.2f, 0.3f, 0.4f};
    Tensor img = e.bytes({B, H, W, Ci}), pat = e.zeros({B * P, Ci * p * p}, DType::f64);
    std::vector<uint8_t> px(size_t(B * H * W * Ci));
    be->download_raw(px.data(), img);
    be->patchify(pat, img, int(p), mean, sd);
    std::vector<double> want(size_t(B * P * Ci * p * p));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t q = 0; q < P; ++q)
            for (int64_t c = 0; c < Ci; ++c)
                for (int64_t ky = 0; ky < p; ++ky)
                    for (int64_t kx = 0; kx < p; ++kx) {
                        const int64_t yy = (q / gw) * p + ky, xx = (q % gw) * p + kx;
                        const double u = px[size_t(((b * H + yy) * W + xx) * Ci + c)];
                        want[size_t((b * P + q) * Ci * p * p + c * p * p + ky * p + kx)] =
                            (u / 255.0 - double(mean[c])) / double(sd[c]);
                    }
    EXPECT_LE(max_abs_diff(host(*be, pat), want), kSpecTol) << "patchify";
    // vit_embed: row 0 is cls + pos[0], row 1 + p is patch p + pos[1 + p].
    const int64_t T = P + 1, C = 3;
    Tensor patches = e.rand({B * P, C}), cls = e.rand({C}), pos = e.rand({T, C}), x = e.zeros({B, T, C}, DType::f64);
    be->vit_embed_forward(x, patches, cls, pos);
    const auto PA = host(*be, patches), CL = host(*be, cls), PO = host(*be, pos);
    want.assign(size_t(B * T * C), 0.0);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t)
            for (int64_t c = 0; c < C; ++c)
                want[(b * T + t) * C + c] = (t == 0 ? CL[c] : PA[(b * P + t - 1) * C + c]) + PO[t * C + c];
    EXPECT_LE(max_abs_diff(host(*be, x), want), kSpecTol) << "vit_embed";
    // embedding + argmax (first maximum) + gather.
    const std::vector<int32_t> tok = {5, 2, 7, 7, 1, 0, 3, 3};
    Tensor tk = e.ints_from({2, 4}, tok), wte = e.rand({8, C}), wpe = e.rand({5, C}), emb = e.zeros({2, 4, C}, DType::f64);
    be->embedding_forward(emb, tk, wte, wpe);
    const auto WT = host(*be, wte), WP = host(*be, wpe);
    want.assign(size_t(2 * 4 * C), 0.0);
    for (int64_t bt = 0; bt < 8; ++bt)
        for (int64_t c = 0; c < C; ++c) want[bt * C + c] = WT[tok[bt] * C + c] + WP[(bt % 4) * C + c];
    EXPECT_LE(max_abs_diff(host(*be, emb), want), kSpecTol) << "embedding";
    Tensor idx = e.zeros({2}, DType::i32);
    be->argmax_rows(idx, tk);
    std::vector<int32_t> id(2);
    be->download_raw(id.data(), idx);
    EXPECT_EQ(id, (std::vector<int32_t>{2, 2}));
    Tensor pooled = e.zeros({2, C}, DType::f64);
    be->gather_rows(pooled, emb, idx);
    const auto E = host(*be, emb), PL = host(*be, pooled);
    for (int64_t b = 0; b < 2; ++b)
        for (int64_t c = 0; c < C; ++c) EXPECT_EQ(PL[b * C + c], E[(b * 4 + 2) * C + c]);
}

TEST(ReferenceSpec, LossesAndAdamW) {
    std::unique_ptr<Backend> be = make_backend(kReference);
    OpEnv e(*be, 44, DType::f64, false);
    const int64_t M = 3, N = 7, off = 2;
    const double t = 2.3, bias = -1.5, w = 0.5;
    Tensor dots = e.rand({M, N}), ts = e.scalar(t, DType::f64), bs = e.scalar(bias, DType::f64);
    const auto D = host(*be, dots);
    Tensor loss = e.zeros({1}, DType::f64), dd = e.zeros({M, N}, DType::f64), ds = e.zeros({1}, DType::f64),
           db = e.zeros({1}, DType::f64);
    be->softmax_xent_rows(loss, dd, ds, dots, ts, off, float(w));
    double L = 0, S = 0;
    std::vector<double> want(M * N);
    for (int64_t i = 0; i < M; ++i) {
        double z = 0;
        for (int64_t j = 0; j < N; ++j) z += std::exp(std::exp(t) * D[i * N + j]);
        L += std::log(z) - std::exp(t) * D[i * N + off + i];
        for (int64_t j = 0; j < N; ++j) {
            const double q = std::exp(std::exp(t) * D[i * N + j]) / z - (j == off + i);
            want[i * N + j] = w * std::exp(t) * q;
            S += q * std::exp(t) * D[i * N + j];
        }
    }
    EXPECT_NEAR(host(*be, loss)[0], w * L, kSpecTol) << "softmax loss";
    EXPECT_NEAR(host(*be, ds)[0], w * S, kSpecTol) << "softmax dscale";
    EXPECT_LE(max_abs_diff(host(*be, dd), want), kSpecTol) << "softmax ddots";
    be->fill(loss, 0.0f);
    be->fill(ds, 0.0f);
    be->sigmoid_pairwise_rows(loss, dd, ds, db, dots, ts, bs, off, float(w));
    L = S = 0;
    double Bg = 0;
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
            const double zz = j == off + i ? 1.0 : -1.0, logit = std::exp(t) * D[i * N + j] + bias;
            L += -std::log(1 / (1 + std::exp(-zz * logit)));  // -log sigmoid(z logit)
            const double g = -zz / (1 + std::exp(zz * logit));
            want[i * N + j] = w * std::exp(t) * g;
            S += g * std::exp(t) * D[i * N + j];
            Bg += g;
        }
    EXPECT_NEAR(host(*be, loss)[0], w * L, kSpecTol) << "sigmoid loss";
    EXPECT_NEAR(host(*be, ds)[0], w * S, kSpecTol) << "sigmoid dscale";
    EXPECT_NEAR(host(*be, db)[0], w * Bg, kSpecTol) << "sigmoid dbias";
    EXPECT_LE(max_abs_diff(host(*be, dd), want), kSpecTol) << "sigmoid ddots";
    // AdamW, torch.optim.AdamW's single-tensor update written out.
    const int64_t n = 6;
    Tensor p = e.rand({n}), gr = e.rand({n}), m = e.rand({n}, -0.1, 0.1), v = e.rand({n}, 0.0, 0.02);
    auto P = host(*be, p), G = host(*be, gr), Mo = host(*be, m), V = host(*be, v);
    AdamWParams hp;
    hp.lr = 0.01f;
    hp.weight_decay = 0.1f;
    hp.step = 3;
    const double gs = 0.5;
    be->adamw_step(p, gr, m, v, Tensor{}, hp, float(gs));
    for (int64_t i = 0; i < n; ++i) {
        const double gi = G[i] * gs, b1 = hp.beta1, b2 = hp.beta2, lr = hp.lr;
        Mo[i] = b1 * Mo[i] + (1 - b1) * gi;
        V[i] = b2 * V[i] + (1 - b2) * gi * gi;
        const double mhat = Mo[i] / (1 - std::pow(b1, 3)), vhat = V[i] / (1 - std::pow(b2, 3));
        P[i] -= lr * (mhat / (std::sqrt(vhat) + double(hp.eps)) + double(hp.weight_decay) * P[i]);
    }
    EXPECT_LE(max_abs_diff(host(*be, p), P), kSpecTol) << "adamw param";
    EXPECT_LE(max_abs_diff(host(*be, m), Mo), kSpecTol) << "adamw m";
    EXPECT_LE(max_abs_diff(host(*be, v), V), kSpecTol) << "adamw v";
}

// pairwise_sigmoid_nll against the formula of backend.h, and against the loss op: the
// sum of the matrix is sigmoid_pairwise_rows's loss.
TEST(ReferenceSpec, PairwiseSigmoidNll) {
    std::unique_ptr<Backend> be = make_backend(kReference);
    OpEnv e(*be, 45, DType::f64, false);
    const int64_t M = 4, N = 9, off = 3;
    const double t = std::log(100.0), bias = -10.0;
    Tensor dots = e.rand({M, N}), ts = e.scalar(t, DType::f64), bs = e.scalar(bias, DType::f64);
    Tensor nll = e.zeros({M, N}, DType::f64), loss = e.zeros({1}, DType::f64);
    be->curation().pairwise_sigmoid_nll(nll, dots, ts, bs, off);
    be->sigmoid_pairwise_rows(loss, Tensor{}, Tensor{}, Tensor{}, dots, ts, bs, off, 1.0f);
    const auto D = host(*be, dots), Y = host(*be, nll);
    std::vector<double> want(M * N);
    double sum = 0.0;
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
            const double z = j == off + i ? 1.0 : -1.0, logit = std::exp(t) * D[i * N + j] + bias;
            want[i * N + j] = -std::log(1 / (1 + std::exp(-z * logit)));
            sum += Y[i * N + j];
        }
    EXPECT_LE(max_abs_diff(Y, want), 1e-9) << "pairwise_sigmoid_nll";  // -log(1/(1+e^x)) loses digits
    EXPECT_NEAR(sum, host(*be, loss)[0], 1e-10 * std::abs(sum)) << "sum vs sigmoid_pairwise_rows";
    EXPECT_THROW(be->curation().pairwise_sigmoid_nll(e.zeros({M, N}, DType::f64), dots, ts, bs, N - M + 1), Error);
    EXPECT_THROW(be->curation().pairwise_sigmoid_nll(e.zeros({M, N + 1}, DType::f64), dots, ts, bs, 0), Error);
}

// Misuse becomes a curaclip::Error, not a crash.
TEST(BackendOpsHarness, RejectsBadArguments) {
    for (const std::string name : {"cpu", "cpu-f64"}) {
        std::unique_ptr<Backend> be = make_backend(name);
        OpEnv e(*be, 3, be->dtype(), true);
        EXPECT_THROW(be->matmul(e.zeros({3, 4}, e.dt()), e.rand({3, 5}), e.rand({4, 4}), false, false), Error);
        EXPECT_THROW(be->linear_forward(e.zeros({3, 4}, e.dt()), e.rand({3, 5}), e.rand({4, 6}), Tensor{}), Error);
        EXPECT_THROW(be->embedding_forward(e.zeros({1, 2, 3}, e.dt()), e.ints_from({1, 2}, {0, 7}),
                                           e.rand({5, 3}), e.rand({2, 3})), Error);
        EXPECT_THROW(be->attention_forward(e.zeros({1, 2, 6}, e.dt()), e.zeros({1, 4, 2}, e.stat()),
                                           e.rand({1, 2, 18}), 4, false), Error);
        EXPECT_THROW(be->softmax_xent_rows(e.zeros({1}, e.stat()), Tensor{}, Tensor{}, e.rand({3, 4}),
                                           e.scalar(1.0, e.stat()), 2, 1.0f), Error);
        EXPECT_THROW(be->gather_rows(e.zeros({2, 3}, e.dt()), e.rand({2, 4, 3}), e.ints_from({2}, {0, 4})), Error);
        const DType other = be->dtype() == DType::f32 ? DType::f64 : DType::f32;
        EXPECT_THROW(be->activation_forward(e.zeros({4}, other), e.rand({4}), Activation::gelu), Error);
        EXPECT_THROW(be->upload(e.zeros({2}, DType::i32), std::vector<float>{1, 2}.data()), Error);
    }
    EXPECT_THROW(make_cpu_backend(DType::bf16), Error);
}

}  // namespace
}  // namespace curaclip
