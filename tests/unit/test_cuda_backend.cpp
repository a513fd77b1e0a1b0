// The CUDA backend beyond the per-op parity harness (test_backend_ops.cpp covers every
// op): a 20-step training run of the tiny recipe on "cuda" against "cpu", the fp32
// master weights of bf16 parameters, device-side bad-index errors, and the clean
// refusal where no GPU is present. Every GPU case skips where "cuda" is unavailable
// (not compiled in, or no device).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "model_fixtures.h"
#include "backend/registry.h"
#include "core/philox.h"
#include "loss/contrastive_loss.h"
#include "model/clip_model.h"
#include "model/model_config.h"
#include "mpi/collectives.h"
#include "optim/adamw.h"
#include "train/train_step.h"

namespace curaclip {
namespace {

using testing::Batch;
using testing::random_batch;

// Empty when "cuda" can run here; otherwise why not.
std::string cuda_unavailable() {
    for (const auto& f : registered_backends())
        if (f.name == "cuda") return f.unavailable_reason();
    return "the CUDA backend is not compiled in";
}

#define SKIP_WITHOUT_CUDA()                                                       \
    do {                                                                          \
        if (const std::string why = cuda_unavailable(); !why.empty())             \
            GTEST_SKIP() << "backend 'cuda' unavailable: " << why;                \
    } while (0)

TEST(CudaBackend, RefusesCleanlyWithoutADevice) {
    bool registered = false;
    for (const auto& f : registered_backends()) registered |= f.name == "cuda";
    if (!registered) GTEST_SKIP() << "built without the CUDA backend";
    const std::string why = cuda_unavailable();
    if (why.empty()) GTEST_SKIP() << "a CUDA device is present (this case checks the refusal)";
    try {
        make_backend("cuda");
        ADD_FAILURE() << "make_backend(\"cuda\") did not throw without a usable device";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
}

// Losses of `steps` training steps of the tiny recipe (configs/tiny.ini's model and
// optimizer, a smaller batch) on `backend`, with the same initial weights and batches.
std::vector<double> train_losses(const std::string& backend, int steps, int64_t B, bool sigmoid) {
    auto be = make_backend(backend);
    ModelConfig cfg = ModelConfig::preset("tiny");
    cfg.image_mean = {0.2860f};
    cfg.image_std = {0.3530f};
    cfg.sigmoid_loss = sigmoid;
    ClipModel model(*be, cfg, B);
    model.init_weights(0);
    model.set_batch(B);
    auto coll = make_single_process_collectives(*be);
    ContrastiveLoss loss(*be, sigmoid ? LossKind::sigmoid : LossKind::softmax, B, cfg.embed_dim, *coll);
    TrainStep step(model, loss, *coll);
    OptimizerConfig oc;
    oc.lr = 1e-3;
    oc.warmup_steps = 5;
    oc.total_steps = steps;
    oc.weight_decay = 0.1;
    oc.beta2 = 0.98;
    oc.grad_clip_norm = 1.0;
    AdamW adamw(model.params(), oc);
    std::vector<double> losses;
    for (int s = 0; s < steps; ++s) {
        const Batch batch = random_batch(cfg, B, 1000 + uint64_t(s % 4));  // 4 batches, revisited
        const StepResult r = step.run(batch.images.data(), batch.tokens.data(), adamw);
        EXPECT_FALSE(r.skipped) << backend << " step " << s;
        losses.push_back(r.loss);
    }
    be->synchronize();
    return losses;
}

// bf16 activations and weights: the runs drift apart slowly; agreement within a few
// percent over 20 steps (and a tight match of the first, pre-update loss).
void compare_runs(bool sigmoid) {
    const int steps = 20;
    const int64_t B = 64;
    const auto cpu = train_losses("cpu", steps, B, sigmoid);
    const auto gpu = train_losses("cuda", steps, B, sigmoid);
    ASSERT_EQ(cpu.size(), gpu.size());
    for (int s = 0; s < steps; ++s) {
        std::printf("  step %2d  cpu %.5f  cuda %.5f  rel %.2e\n", s, cpu[size_t(s)], gpu[size_t(s)],
                    std::abs(gpu[size_t(s)] - cpu[size_t(s)]) / std::abs(cpu[size_t(s)]));
        ASSERT_TRUE(std::isfinite(gpu[size_t(s)])) << "step " << s;
        const double tol = (s == 0 ? 0.01 : 0.05) * std::abs(cpu[size_t(s)]) + 0.01;
        EXPECT_NEAR(gpu[size_t(s)], cpu[size_t(s)], tol) << "step " << s;
    }
    // Both runs learn (revisiting 4 batches: the loss must fall).
    EXPECT_LT(gpu.back(), gpu.front());
    EXPECT_LT(cpu.back(), cpu.front());
}

TEST(CudaBackend, TinyRecipeTrainsLikeCpuSoftmax) {
    SKIP_WITHOUT_CUDA();
    compare_runs(false);
}

TEST(CudaBackend, TinyRecipeTrainsLikeCpuSigmoid) {
    SKIP_WITHOUT_CUDA();
    compare_runs(true);
}

// Updates far below bf16 resolution accumulate in the fp32 master copy; a write to the
// parameter behind the optimizer's back re-seeds the master.
TEST(CudaBackend, MasterWeightsKeepSmallUpdates) {
    SKIP_WITHOUT_CUDA();
    auto be = make_backend("cuda");
    ASSERT_EQ(be->dtype(), DType::bf16);
    const int64_t n = 256;
    auto mk = [&](DType dt) {
        return Tensor{be->alloc(size_t(n) * dtype_size(dt)), dt, Shape{n}};
    };
    Tensor p = mk(DType::bf16), g = mk(DType::bf16), m = mk(DType::f32), v = mk(DType::f32);
    be->fill(p, 1.0f);
    be->fill(g, 1.0f);
    be->fill(m, 0.0f);
    be->fill(v, 0.0f);
    AdamWParams hp;
    hp.lr = 1e-4f;  // bf16 spacing at 1.0 is 2^-7 = 0.0078: a single step rounds away
    const int steps = 100;
    for (int s = 1; s <= steps; ++s) {
        hp.step = s;
        be->adamw_step(p, g, m, v, hp, 1.0f);
    }
    std::vector<double> got(static_cast<size_t>(n));
    be->download(got.data(), p);
    const double want = 1.0 - steps * 1e-4;  // |update| = lr (constant gradient, bias-corrected)
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(got[size_t(i)], want, 0.0079) << i;
    EXPECT_LT(got[0], 1.0);
    // Overwrite the parameter: the next step starts from the new value, not the master.
    std::vector<double> two(size_t(n), 2.0);
    be->upload(p, two.data());
    hp.step = steps + 1;
    be->adamw_step(p, g, m, v, hp, 1.0f);
    be->download(got.data(), p);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(got[size_t(i)], 2.0) << i;  // 2 - 1e-4 rounds to 2 in bf16
    for (Tensor t : {p, g, m, v}) be->free(t.data);
}

// A token id out of range is reported (as an Error at the next synchronize), never written.
TEST(CudaBackend, BadTokenIdIsAnError) {
    SKIP_WITHOUT_CUDA();
    auto be = make_backend("cuda");
    const int64_t V = 5, T = 3, C = 4;
    Tensor tok{be->alloc(2 * T * 4), DType::i32, Shape{2, T}};
    Tensor wte{be->alloc(V * C * 2), DType::bf16, Shape{V, C}};
    Tensor wpe{be->alloc(T * C * 2), DType::bf16, Shape{T, C}};
    Tensor out{be->alloc(2 * T * C * 2), DType::bf16, Shape{2, T, C}};
    const std::vector<int32_t> ids = {0, 1, 2, 3, 4, 5};  // 5 is outside [0, 5)
    be->upload_raw(tok, ids.data());
    be->fill(wte, 1.0f);
    be->fill(wpe, 0.5f);
    be->embedding_forward(out, tok, wte, wpe);
    EXPECT_THROW(be->synchronize(), Error);
    be->synchronize();  // the flag was cleared: the backend stays usable
    EXPECT_THROW(be->embedding_backward(wte, Tensor{}, out, tok), Error);  // checked on the host
    for (Tensor t : {tok, wte, wpe, out}) be->free(t.data);
}

}  // namespace
}  // namespace curaclip
