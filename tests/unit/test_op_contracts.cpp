// The argument contracts of the model ops (backend/op_contracts.cpp): calls with wrong
// shapes, counts, offsets and index dtypes fail with an Error that names the op and
// says what was expected, before any kernel runs. The checks live in Backend itself,
// so they are the same on every backend: each case runs on every available one
// (cpu and cpu-f64 here; cuda where a GPU is present). What stays in a kernel (its
// compute dtypes, values read from the data) is shown on the CPU at the end.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backend/arena.h"
#include "backend/backend.h"
#include "backend/registry.h"
#include "tests/common/test_files.h"

namespace curaclip {
namespace {

using testing::expect_error;

// The Error names the op and what was expected, and comes from the shared checker.
template <typename F>
void expect_contract(const std::string& message, F&& f) {
    expect_error(std::forward<F>(f), {message, "op_contracts.cpp"});
}

// One backend with a small zero-filled arena. Float tensors are in the backend's
// compute dtype unless asked otherwise, statistics and scalars f32.
struct Env {
    std::unique_ptr<Backend> be;
    std::unique_ptr<Arena> arena;
    explicit Env(const std::string& name) : be(make_backend(name)) {
        arena = std::make_unique<Arena>(*be, size_t(1) << 20, "op_contracts");
    }
    Tensor t(Shape s) { return arena->alloc(s, be->dtype()); }
    Tensor t(Shape s, DType dt) { return arena->alloc(s, dt); }
    Tensor i32(Shape s) { return arena->alloc(s, DType::i32); }
    Tensor stat(Shape s) { return arena->alloc(s, DType::f32); }
};

// Runs `body` on every available backend, naming the backend in failures.
template <typename F>
void on_every_backend(F&& body) {
    for (const auto& f : registered_backends()) {
        if (!f.unavailable_reason().empty()) continue;
        SCOPED_TRACE("backend " + f.name);
        Env e(f.name);
        body(e);
    }
}

TEST(OpContracts, Elementwise) {
    on_every_backend([](Env& e) {
        Backend& be = *e.be;
        expect_contract("fill: x is empty", [&] { be.fill(Tensor{}, 1.0f); });
        expect_contract("copy: dst [3] and src [4] differ in size", [&] { be.copy(e.t({3}), e.t({4})); });
        expect_contract("copy: empty tensor", [&] { be.copy(e.t({3}), Tensor{}); });
        expect_contract("add: out is f32 but a is f64",
                        [&] { be.add(e.t({4}, DType::f32), e.t({4}, DType::f64), e.t({4}, DType::f32)); });
        expect_contract("add: out [2, 2] and b [5] differ in size",
                        [&] { be.add(e.t({2, 2}), e.t({2, 2}), e.t({5})); });
        expect_contract("accumulate: dst [2, 3] and src [3, 3] differ in size",
                        [&] { be.accumulate(e.t({2, 3}), e.t({3, 3})); });
        expect_contract("scale: x is empty", [&] { be.scale(Tensor{}, 2.0f); });
        expect_contract("sum_squares: out [2] should have 1 elements",
                        [&] { be.sum_squares(e.stat({2}), e.t({4})); });
        expect_contract("sum_squares: out has dtype i32, expected f32 or f64",
                        [&] { be.sum_squares(e.i32({1}), e.t({4})); });
        expect_contract("clamp: lo 2 > hi 1", [&] { be.clamp(e.t({1}), 2.0f, 1.0f); });
    });
}

TEST(OpContracts, MatmulAndLinear) {
    on_every_backend([](Env& e) {
        Backend& be = *e.be;
        const Tensor none{};
        expect_contract("matmul: inner dimensions differ: op(a) is [3, 5] (a [3, 5]), op(b) is [4, 4] "
                        "(b [4, 4])",
                        [&] { be.matmul(e.t({3, 4}), e.t({3, 5}), e.t({4, 4}), false, false); });
        expect_contract("matmul: out [4, 3] should be [3, 4]",
                        [&] { be.matmul(e.t({4, 3}), e.t({5, 3}), e.t({5, 4}), true, false); });
        EXPECT_NO_THROW(be.matmul(e.t({3, 4}), e.t({3, 5}), e.t({4, 5}), false, true));  // the contract holds
        // inp [N=3, C=5], weight [OC=4, 5], out [3, 4].
        const Tensor inp = e.t({3, 5}), w = e.t({4, 5}), out = e.t({3, 4});
        expect_contract("linear_forward: weight [4, 6] does not take 5 input features (inp [3, 5])",
                        [&] { be.linear_forward(out, inp, e.t({4, 6}), none); });
        expect_contract("linear_forward: weight [4, 5, 1] should be [out, in]",
                        [&] { be.linear_forward(out, inp, e.t({4, 5, 1}), none); });
        expect_contract("linear_forward: bias [5] should have 4 elements",
                        [&] { be.linear_forward(out, inp, w, e.t({5})); });
        expect_contract("linear_forward: out [2, 4] should be [3, 4]",
                        [&] { be.linear_forward(e.t({2, 4}), inp, w, none); });
        expect_contract("linear_backward: dinp [3, 4] should be [3, 5]",
                        [&] { be.linear_backward(e.t({3, 4}), none, none, out, inp, w); });
        expect_contract("linear_backward: inp is empty",
                        [&] { be.linear_backward(none, e.t({4, 5}), none, out, none, w); });
        expect_contract("linear_backward: dweight [5, 4] differs from weight [4, 5]",
                        [&] { be.linear_backward(none, e.t({5, 4}), none, out, inp, w); });
        expect_contract("linear_backward: dout [3, 5] should have 4 columns (weight [4, 5])",
                        [&] { be.linear_backward(none, none, none, e.t({3, 5}), none, w); });
    });
}

TEST(OpContracts, NormalizationAndActivations) {
    on_every_backend([](Env& e) {
        Backend& be = *e.be;
        const Tensor none{};
        // inp [N=3, C=4]: weight, bias [4]; mean, rstd [3].
        const Tensor x = e.t({3, 4}), out = e.t({3, 4}), w = e.t({4}), b = e.t({4});
        const Tensor mean = e.stat({3}), rstd = e.stat({3});
        expect_contract("layernorm_forward: mean [2] should have 3 elements",
                        [&] { be.layernorm_forward(out, e.stat({2}), rstd, x, w, b); });
        expect_contract("layernorm_forward: weight [5] should have 4 elements",
                        [&] { be.layernorm_forward(out, mean, rstd, x, e.t({5}), none); });
        expect_contract("layernorm_forward: out [4, 3] should be [3, 4]",
                        [&] { be.layernorm_forward(e.t({4, 3}), mean, rstd, x, w, b); });
        expect_contract("layernorm_forward: mean and rstd differ in dtype",
                        [&] { be.layernorm_forward(out, mean, e.t({3}, DType::f64), x, w, none); });
        expect_contract("layernorm_forward: rstd is empty",
                        [&] { be.layernorm_forward(out, mean, none, x, w, none); });
        expect_contract("layernorm_backward: dinp [3, 5] should be [3, 4]",
                        [&] { be.layernorm_backward(e.t({3, 5}), none, none, out, x, w, mean, rstd); });
        expect_contract("layernorm_backward: dbias [3] should have 4 elements",
                        [&] { be.layernorm_backward(none, none, e.t({3}), out, x, w, mean, rstd); });
        expect_contract("activation_forward: out [5] should have 4 elements",
                        [&] { be.activation_forward(e.t({5}), e.t({4}), Activation::gelu); });
        expect_contract("activation_forward: unknown activation 7",
                        [&] { be.activation_forward(e.t({4}), e.t({4}), static_cast<Activation>(7)); });
        expect_contract("activation_backward: dout [2, 3] should have 4 elements",
                        [&] { be.activation_backward(e.t({4}), e.t({2, 3}), e.t({4}), Activation::quick_gelu); });
        expect_contract("l2_normalize_forward: norms [3] should have 2 elements",
                        [&] { be.l2_normalize_forward(e.t({2, 4}), e.stat({3}), e.t({2, 4})); });
        expect_contract("l2_normalize_backward: dout [2, 3] should be [2, 4]",
                        [&] { be.l2_normalize_backward(e.t({2, 4}), e.t({2, 3}), e.t({2, 4}), e.stat({2})); });
    });
}

TEST(OpContracts, Attention) {
    on_every_backend([](Env& e) {
        Backend& be = *e.be;
        // qkv [B=1, T=2, 3C=18]: C = 6; n_head 3: stats [1, 3, 2].
        const Tensor qkv = e.t({1, 2, 18}), out = e.t({1, 2, 6}), stats = e.stat({1, 3, 2});
        expect_contract("attention_forward: n_head 4 does not divide C = 6",
                        [&] { be.attention_forward(out, e.stat({1, 4, 2}), qkv, 4, false); });
        expect_contract("attention_forward: n_head 0 does not divide C = 6",
                        [&] { be.attention_forward(out, stats, qkv, 0, true); });
        expect_contract("attention_forward: qkv [2, 18] should be [B, T, 3C]",
                        [&] { be.attention_forward(e.t({2, 6}), stats, e.t({2, 18}), 3, true); });
        expect_contract("attention_forward: qkv [1, 2, 17] last dimension is not 3C",
                        [&] { be.attention_forward(out, stats, e.t({1, 2, 17}), 3, true); });
        expect_contract("attention_forward: out [1, 2, 5] should be [1, 2, 6]",
                        [&] { be.attention_forward(e.t({1, 2, 5}), stats, qkv, 3, true); });
        expect_contract("attention_forward: stats [1, 2, 2] should have 6 elements",
                        [&] { be.attention_forward(out, e.stat({1, 2, 2}), qkv, 3, true); });
        expect_contract("attention_backward: dqkv [1, 2, 12] differs from qkv [1, 2, 18]",
                        [&] { be.attention_backward(e.t({1, 2, 12}), out, qkv, out, stats, 3, true); });
        expect_contract("attention_backward: dout [1, 3, 6] differs from out [1, 2, 6]",
                        [&] { be.attention_backward(e.t({1, 2, 18}), e.t({1, 3, 6}), qkv, out, stats, 3, true); });
        // Padded, B=2, T=3: lengths i32 [2].
        const Tensor pqkv = e.t({2, 3, 18}), pout = e.t({2, 3, 6});
        expect_contract("attention_padded_forward: lengths [3] should have 2 elements",
                        [&] { be.attention_padded_forward(pout, pqkv, e.i32({3}), 2); });
        expect_contract("attention_padded_forward: lengths has dtype f32, expected i32",
                        [&] { be.attention_padded_forward(pout, pqkv, e.stat({2}), 2); });
        expect_contract("attention_padded_forward: n_head 4 does not divide C = 6",
                        [&] { be.attention_padded_forward(pout, pqkv, e.i32({2}), 4); });
        expect_contract("attention_padded_forward: out [2, 3, 5] should be [2, 3, 6]",
                        [&] { be.attention_padded_forward(e.t({2, 3, 5}), pqkv, e.i32({2}), 2); });
    });
}

TEST(OpContracts, EmbeddingsPatchifyVit) {
    on_every_backend([](Env& e) {
        Backend& be = *e.be;
        const Tensor none{};
        // tokens [B=1, T=3], wte [V=7, C=4], wpe [3, 4], out [1, 3, 4].
        const Tensor tok = e.i32({1, 3}), wte = e.t({7, 4}), wpe = e.t({3, 4}), out = e.t({1, 3, 4});
        expect_contract("embedding_forward: tokens [3] should be [B, T]",
                        [&] { be.embedding_forward(out, e.i32({3}), wte, wpe); });
        expect_contract("embedding_forward: tokens has dtype f32, expected i32",
                        [&] { be.embedding_forward(out, e.stat({1, 3}), wte, wpe); });
        expect_contract("embedding_forward: wpe [2, 4] should be [>= 3, 4]",
                        [&] { be.embedding_forward(out, tok, wte, e.t({2, 4})); });
        expect_contract("embedding_forward: out [1, 3, 5] should be [1, 3, 4]",
                        [&] { be.embedding_forward(e.t({1, 3, 5}), tok, wte, wpe); });
        expect_contract("embedding_backward: dwte [7, 5] should have 4 columns",
                        [&] { be.embedding_backward(e.t({7, 5}), none, out, tok); });
        expect_contract("embedding_backward: dout [1, 2, 4] should be [1, 3, 4]",
                        [&] { be.embedding_backward(none, none, e.t({1, 2, 4}), tok); });
        // images [B=1, 4, 4, Cin=3], patch 2: out [4, 12].
        const float mean[3] = {0.5f, 0.5f, 0.5f}, std[3] = {0.25f, 0.25f, 0.25f};
        const float bad_std[3] = {0.25f, 0.0f, 0.25f};
        const Tensor img = e.arena->alloc({1, 4, 4, 3}, DType::u8), patches = e.t({4, 12});
        expect_contract("patchify: patch 3 does not tile 4x4", [&] { be.patchify(patches, img, 3, mean, std); });
        expect_contract("patchify: out [4, 11] should be [4, 12]",
                        [&] { be.patchify(e.t({4, 11}), img, 2, mean, std); });
        expect_contract("patchify: std[1] is zero", [&] { be.patchify(patches, img, 2, mean, bad_std); });
        expect_contract("patchify: mean and std must be given",
                        [&] { be.patchify(patches, img, 2, mean, nullptr); });
        expect_contract("patchify: images has dtype f32, expected u8",
                        [&] { be.patchify(patches, e.stat({1, 4, 4, 3}), 2, mean, std); });
        // x [B=2, T=3, C=4]: patches [2, 2, 4], cls [4], pos [3, 4].
        const Tensor x = e.t({2, 3, 4}), p = e.t({2, 2, 4}), cls = e.t({4}), pos = e.t({3, 4});
        expect_contract("vit_embed_forward: pos [2, 4] should be [3, 4]",
                        [&] { be.vit_embed_forward(x, p, cls, e.t({2, 4})); });
        expect_contract("vit_embed_forward: patches [2, 3, 4] should have 16 elements",
                        [&] { be.vit_embed_forward(x, e.t({2, 3, 4}), cls, pos); });
        expect_contract("vit_embed_forward: out [2, 0, 4] has no class token row",
                        [&] { be.vit_embed_forward(e.t({2, 0, 4}), p, cls, pos); });
        expect_contract("vit_embed_backward: dcls [5] should have 4 elements",
                        [&] { be.vit_embed_backward(none, e.t({5}), none, x); });
    });
}

TEST(OpContracts, ArgmaxAndGathers) {
    on_every_backend([](Env& e) {
        Backend& be = *e.be;
        expect_contract("argmax_rows: idx [3] should have 2 elements",
                        [&] { be.argmax_rows(e.i32({3}), e.i32({2, 5})); });
        expect_contract("argmax_rows: tokens [2, 0] has empty rows",
                        [&] { be.argmax_rows(e.i32({2}), e.i32({2, 0})); });
        expect_contract("argmax_rows: idx has dtype f32, expected i32",
                        [&] { be.argmax_rows(e.stat({2}), e.i32({2, 5})); });
        // x [B=2, T=5, C=3], idx [2], out [2, 3].
        const Tensor x = e.t({2, 5, 3}), idx = e.i32({2}), out = e.t({2, 3});
        expect_contract("gather_rows: x [2, 3] should be [B, T, C]",
                        [&] { be.gather_rows(out, e.t({2, 3}), idx); });
        expect_contract("gather_rows: out [2, 4] should be [2, 3]", [&] { be.gather_rows(e.t({2, 4}), x, idx); });
        expect_contract("gather_rows: idx has dtype f32, expected i32",
                        [&] { be.gather_rows(out, x, e.stat({2})); });
        expect_contract("gather_rows_backward: idx [3] should have 2 elements",
                        [&] { be.gather_rows_backward(x, out, e.i32({3})); });
        expect_contract("gather_rows_backward: dout [3, 3] should be [2, 3]",
                        [&] { be.gather_rows_backward(x, e.t({3, 3}), idx); });
    });
}

TEST(OpContracts, ContrastiveLosses) {
    on_every_backend([](Env& e) {
        Backend& be = *e.be;
        const Tensor none{};
        // dots [M=3, N=4]: label_offset in [0, 1]; loss, logit scale and bias [1].
        const Tensor dots = e.t({3, 4}), loss = e.stat({1}), t = e.stat({1}), b = e.stat({1});
        expect_contract("softmax_xent_rows: label_offset 2 puts the positives of 3 rows outside the 4 columns "
                        "of dots [3, 4]",
                        [&] { be.softmax_xent_rows(loss, none, none, dots, t, 2, 1.0f); });
        expect_contract("softmax_xent_rows: label_offset -1 puts the positives",
                        [&] { be.softmax_xent_rows(loss, none, none, dots, t, -1, 1.0f); });
        expect_contract("softmax_xent_rows: ddots [3, 5] differs from dots [3, 4]",
                        [&] { be.softmax_xent_rows(loss, e.t({3, 5}), none, dots, t, 1, 1.0f); });
        expect_contract("softmax_xent_rows: loss [2] should have 1 elements",
                        [&] { be.softmax_xent_rows(e.stat({2}), none, none, dots, t, 0, 1.0f); });
        expect_contract("softmax_xent_rows: logit_scale [2] should have 1 elements",
                        [&] { be.softmax_xent_rows(loss, none, none, dots, e.stat({2}), 0, 1.0f); });
        expect_contract("softmax_xent_rows: dscale [3] should have 1 elements",
                        [&] { be.softmax_xent_rows(loss, none, e.stat({3}), dots, t, 0, 1.0f); });
        expect_contract("sigmoid_pairwise_rows: logit_bias is empty",
                        [&] { be.sigmoid_pairwise_rows(loss, none, none, none, dots, t, none, 0, 1.0f); });
        expect_contract("sigmoid_pairwise_rows: dbias [2] should have 1 elements",
                        [&] { be.sigmoid_pairwise_rows(loss, none, none, e.stat({2}), dots, t, b, 0, 1.0f); });
        expect_contract("sigmoid_pairwise_rows: label_offset 3 puts the positives of 2 rows outside the 4 columns",
                        [&] { be.sigmoid_pairwise_rows(loss, none, none, none, e.t({2, 4}), t, b, 3, 1.0f); });
    });
}

// What stays with the CPU kernels once the shapes are right: their compute dtypes and
// the index values, which only a kernel can read (the CUDA kernels flag bad values on
// the device instead; tests/unit/test_cuda_backend.cpp).
TEST(OpContracts, AdamW) {
    on_every_backend([](Env& e) {
        Backend& be = *e.be;
        const Tensor none{};
        AdamWParams hp;
        // The moments and (on a bf16 backend) the master the ParameterSet would give.
        const bool narrow = dtype_size(be.dtype()) < 4;
        auto master = [&](int64_t n) { return narrow ? e.stat({n}) : Tensor{}; };
        expect_contract("adamw_step: grad [5] should have 4 elements",
                        [&] { be.adamw_step(e.t({4}), e.t({5}), e.stat({4}), e.stat({4}), master(4), hp, 1.0f); });
        expect_contract("adamw_step: v [3] should have 4 elements",
                        [&] { be.adamw_step(e.t({4}), e.t({4}), e.stat({4}), e.stat({3}), master(4), hp, 1.0f); });
        expect_contract("adamw_step: m is f32 but v is f64", [&] {
            be.adamw_step(e.t({4}), e.t({4}), e.stat({4}), e.t({4}, DType::f64), master(4), hp, 1.0f);
        });
        expect_contract("adamw_step: m is empty",
                        [&] { be.adamw_step(e.t({4}), e.t({4}), none, e.stat({4}), master(4), hp, 1.0f); });
        if (narrow)
            expect_contract("param needs its f32 master copy",
                            [&] { be.adamw_step(e.t({4}), e.t({4}), e.stat({4}), e.stat({4}), none, hp, 1.0f); });
        else
            expect_contract("param has no master copy, got master [4]",
                            [&] { be.adamw_step(e.t({4}), e.t({4}), e.stat({4}), e.stat({4}), e.stat({4}), hp, 1.0f); });
        AdamWParams zero = hp;
        zero.step = 0;
        expect_contract("adamw_step: step 0 must be >= 1",
                        [&] { be.adamw_step(e.t({4}), e.t({4}), e.stat({4}), e.stat({4}), master(4), zero, 1.0f); });
        AdamWParams betas = hp;
        betas.beta2 = 1.0f;
        expect_contract("adamw_step: betas (0.9, 1) must lie in [0, 1)",
                        [&] { be.adamw_step(e.t({4}), e.t({4}), e.stat({4}), e.stat({4}), master(4), betas, 1.0f); });
    });
}

TEST(OpContracts, CpuKernelsCheckTheirDtypesAndTheData) {
    Env e("cpu");
    Backend& be = *e.be;
    expect_error([&] { be.activation_forward(e.t({4}, DType::f64), e.t({4}), Activation::gelu); },
                 {"activation_forward: out has dtype f64, expected the backend's f32", "cpu_kernels.h"});
    expect_error([&] { be.matmul(e.t({3, 4}, DType::f64), e.t({3, 5}), e.t({5, 4}), false, false); },
                 {"matmul: out has dtype f64, expected the backend's f32", "cpu_kernels.h"});
    const int32_t tokens[3] = {1, 7, 2}, idx[2] = {0, 5}, lengths[2] = {3, 0};
    const Tensor tok = e.i32({1, 3}), id = e.i32({2}), len = e.i32({2});
    be.upload_raw(tok, tokens);
    be.upload_raw(id, idx);
    be.upload_raw(len, lengths);
    expect_error([&] { be.embedding_forward(e.t({1, 3, 4}), tok, e.t({7, 4}), e.t({3, 4})); },
                 {"embedding_forward: tokens[1] = 7 is outside [0, 7)", "cpu_embed.cpp"});
    expect_error([&] { be.gather_rows(e.t({2, 3}), e.t({2, 5, 3}), id); },
                 {"gather_rows: idx[1] = 5 is outside [0, 5)", "cpu_embed.cpp"});
    expect_error([&] { be.attention_padded_forward(e.t({2, 3, 6}), e.t({2, 3, 18}), len, 2); },
                 {"attention_padded_forward: lengths[1] = 0 is outside [1, T = 3]", "cpu_attention_padded.cpp"});
}

}  // namespace
}  // namespace curaclip
