// FlexiViT multi-resolution: the host resize maps (bilinear B / M, PI-resize R),
// the derived weights on the backend, the multi-resolution forward/backward
// (whole-model float64 finite differences w.r.t. every parameter tensor), the
// low-resolution scoring forward and the compute accounting.
#include <gtest/gtest.h>

#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>
#include <vector>

#include "model_fixtures.h"
#include "backend/registry.h"
#include "core/philox.h"
#include "loss/contrastive_loss.h"
#include "cli/model_options.h"
#include "model/clip_model.h"
#include "model/flexi_resize.h"
#include "train/train_step.h"

namespace curaclip {
namespace {

using Res = ClipModel::Resolution;

// ---------------------------------------------------------------- host maps

void expect_matrix(const std::vector<double>& got, const std::vector<double>& want, const char* what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-15) << what << " [" << i << "]";
}

std::vector<double> matvec(const std::vector<double>& m, const std::vector<double>& x, size_t rows) {
    const size_t cols = x.size();
    std::vector<double> y(rows, 0.0);
    for (size_t i = 0; i < rows; ++i)
        for (size_t j = 0; j < cols; ++j) y[i] += m[i * cols + j] * x[j];
    return y;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

std::vector<double> random_vector(size_t n, uint64_t seed) {
    Philox rng(seed, RngPurpose::test);
    std::vector<double> v(n);
    for (double& x : v) x = rng.normal();
    return v;
}

TEST(FlexiResize, BilinearWeightsAreTorchsHalfPixelRule) {
    // torch.nn.functional.interpolate(one_hot, size, mode="bilinear", align_corners=False),
    // worked out by hand: source coordinate (i + 0.5) * in/out - 0.5, clamped at 0.
    expect_matrix(bilinear_weights_1d(2, 4), {1, 0, 0.75, 0.25, 0.25, 0.75, 0, 1}, "2->4");
    expect_matrix(bilinear_weights_1d(4, 2), {0.5, 0.5, 0, 0, 0, 0, 0.5, 0.5}, "4->2");
    expect_matrix(bilinear_weights_1d(3, 2), {0.75, 0.25, 0, 0, 0.25, 0.75}, "3->2");
    expect_matrix(bilinear_weights_1d(2, 3), {1, 0, 0.5, 0.5, 0, 1}, "2->3");
    expect_matrix(bilinear_weights_1d(3, 3), {1, 0, 0, 0, 1, 0, 0, 0, 1}, "3->3");
    // 2-D is the Kronecker product over (y, x), row-major: entry (o=(1,2), i=(0,1)) of 2->4.
    const std::vector<double> b = bilinear_resize_matrix(2, 4);
    ASSERT_EQ(b.size(), size_t(16 * 4));
    EXPECT_DOUBLE_EQ(b[(1 * 4 + 2) * 4 + (0 * 2 + 1)], 0.75 * 0.75);
}

TEST(FlexiResize, ConstantPatchStaysConstant) {
    for (auto [p, q] : std::vector<std::pair<int, int>>{{2, 4}, {4, 2}, {3, 5}, {7, 14}, {14, 7}, {16, 32}, {5, 3}}) {
        const std::vector<double> b = bilinear_resize_matrix(p, q);
        const std::vector<double> y = matvec(b, std::vector<double>(size_t(p * p), 2.5), size_t(q * q));
        for (double v : y) EXPECT_NEAR(v, 2.5, 1e-14) << p << "->" << q;
    }
}

TEST(FlexiResize, PiResizeKeepsInnerProductsWhenUpsampling) {
    // <x, w> = <B x, R w> for every patch x when p' >= p (B injective).
    for (auto [p, q] : std::vector<std::pair<int, int>>{{3, 6}, {7, 14}, {4, 6}, {2, 5}}) {
        const size_t p2 = size_t(p * p), q2 = size_t(q * q);
        const std::vector<double> b = bilinear_resize_matrix(p, q), r = pi_resize_matrix(p, q);
        ASSERT_EQ(r.size(), q2 * p2);
        for (uint64_t s = 0; s < 3; ++s) {
            const std::vector<double> x = random_vector(p2, 10 + s), w = random_vector(p2, 20 + s);
            const double lhs = dot(x, w), rhs = dot(matvec(b, x, q2), matvec(r, w, q2));
            EXPECT_NEAR(rhs, lhs, 1e-11 * (1 + std::abs(lhs))) << p << "->" << q;
        }
    }
}

TEST(FlexiResize, PiResizeIsLeastSquaresWhenDownsampling) {
    // p' < p: ŵ = argmin ||Bᵀŵ - w||, i.e. the normal equations B (Bᵀŵ - w) = 0.
    for (auto [p, q] : std::vector<std::pair<int, int>>{{6, 3}, {14, 7}, {5, 3}}) {
        const size_t p2 = size_t(p * p), q2 = size_t(q * q);
        const std::vector<double> b = bilinear_resize_matrix(p, q), r = pi_resize_matrix(p, q);
        const std::vector<double> w = random_vector(p2, 5);
        const std::vector<double> wh = matvec(r, w, q2);
        std::vector<double> res(p2, 0.0);  // Bᵀŵ - w
        for (size_t i = 0; i < q2; ++i)
            for (size_t j = 0; j < p2; ++j) res[j] += b[i * p2 + j] * wh[i];
        for (size_t j = 0; j < p2; ++j) res[j] -= w[j];
        const std::vector<double> g = matvec(b, res, q2);
        for (double v : g) EXPECT_NEAR(v, 0.0, 1e-12) << p << "->" << q;
        // Not exact: a downsampled kernel cannot represent every full-resolution one.
        EXPECT_GT(dot(res, res), 1e-3);
    }
}

TEST(FlexiResize, PiResizeAtTheSamePatchSizeIsTheIdentity) {
    for (int p : {1, 4, 7}) {
        const std::vector<double> r = pi_resize_matrix(p, p);
        for (int i = 0; i < p * p; ++i)
            for (int j = 0; j < p * p; ++j) EXPECT_NEAR(r[size_t(i * p * p + j)], i == j ? 1.0 : 0.0, 1e-13);
    }
}

TEST(FlexiResize, PositionalGridInterpolation) {
    // Identity at g' = g.
    const std::vector<double> id = bilinear_resize_matrix(4, 4);
    for (int i = 0; i < 16; ++i)
        for (int j = 0; j < 16; ++j) EXPECT_EQ(id[size_t(i * 16 + j)], i == j ? 1.0 : 0.0);
    // 4x4 -> 2x2: each corner is the mean of its 2x2 block (source coordinate 0.5).
    const std::vector<double> down = bilinear_resize_matrix(4, 2);
    const std::vector<double> grid = random_vector(16, 3);
    const std::vector<double> out = matvec(down, grid, 4);
    EXPECT_NEAR(out[0], (grid[0] + grid[1] + grid[4] + grid[5]) / 4, 1e-15);
    EXPECT_NEAR(out[3], (grid[10] + grid[11] + grid[14] + grid[15]) / 4, 1e-15);
    // 2x2 -> 4x4: the corners keep the corner values (clamped source coordinates).
    const std::vector<double> up = matvec(bilinear_resize_matrix(2, 4), {1, 2, 3, 4}, 16);
    EXPECT_DOUBLE_EQ(up[0], 1);
    EXPECT_DOUBLE_EQ(up[3], 2);
    EXPECT_DOUBLE_EQ(up[12], 3);
    EXPECT_DOUBLE_EQ(up[15], 4);
    EXPECT_DOUBLE_EQ(up[5], 0.75 * 0.75 * 1 + 0.75 * 0.25 * 2 + 0.25 * 0.75 * 3 + 0.25 * 0.25 * 4);
}

// ---------------------------------------------------------------- model

using testing::Batch;
using testing::random_batch;

ModelConfig small_config(int image, int patch, int flexi, int channels, bool sigmoid) {
    return testing::small_model_config(image, patch, channels, sigmoid, flexi);
}

void jitter_weights(ClipModel& model, Backend& be) {
    Philox jitter(99, RngPurpose::test);
    for (auto& p : model.params().all()) {
        std::vector<double> v(size_t(p.shape.numel()));
        be.download(v.data(), p.value);
        for (double& x : v) x += 0.1 * jitter.normal();
        be.upload(p.value, v.data());
    }
}

std::vector<double> to_host(Backend& be, Tensor t) {
    std::vector<double> v(size_t(t.numel()));
    be.download(v.data(), t);
    return v;
}

// Finite differences of the global loss, with the image rows at resolution `res`,
// w.r.t. sampled entries of EVERY parameter tensor (more samples of conv1 and the
// positional embedding, which go through the derived-weight maps).
void check_gradients(const ModelConfig& cfg, Res res, int64_t B) {
    auto be = make_backend("cpu-f64");
    ClipModel model(*be, cfg, B);
    model.init_weights(7);
    jitter_weights(model, *be);
    auto coll = make_single_process_collectives(*be);
    ContrastiveLoss loss(*be, cfg.sigmoid_loss ? LossKind::sigmoid : LossKind::softmax, B, cfg.embed_dim, *coll);
    TrainStep step(model, loss, *coll);
    if (res == Res::full) step.set_multires(false);
    const Batch batch = random_batch(cfg, B, 3);

    if (res == Res::low) {  // not a training layout: drive the model directly
        model.set_batch(B, Res::low);
        model.set_inputs(batch.images.data(), batch.tokens.data());
        model.params().zero_grad();
        model.forward();
        model.zero_embedding_grads();
        Parameter* bias = model.logit_bias();
        loss.forward_backward(model.image_embeddings(), model.text_embeddings(), model.logit_scale().value,
                              bias ? bias->value : Tensor{}, model.d_image_embeddings(), model.d_text_embeddings(),
                              model.logit_scale().grad, bias ? bias->grad : Tensor{});
        model.backward();
    } else {
        step.compute_gradients(batch.images.data(), batch.tokens.data());
    }
    ASSERT_EQ(model.resolution(), res);
    if (res == Res::multires) {
        ASSERT_GT(model.low_rows(), 0);
        ASSERT_LT(model.low_rows(), B);
    }
    std::vector<std::vector<double>> grads;
    for (size_t i = 0; i < model.params().size(); ++i) grads.push_back(model.params().grads_to_host(i));

    auto loss_at = [&]() {
        model.set_inputs(batch.images.data(), batch.tokens.data());
        model.forward();
        Parameter* bias = model.logit_bias();
        loss.forward(model.image_embeddings(), model.text_embeddings(), model.logit_scale().value,
                     bias ? bias->value : Tensor{});
        return loss.loss();
    };

    const double h = 1e-5;
    Philox pick(5, RngPurpose::test);
    int checked = 0;
    for (size_t i = 0; i < model.params().size(); ++i) {
        Parameter& p = model.params()[i];
        std::vector<double> value = model.params().values_to_host(i);
        const bool resized = p.name == "visual.conv1.weight" || p.name == "visual.positional_embedding";
        const int samples = int(std::min<int64_t>(resized ? 10 : 3, p.shape.numel()));
        for (int s = 0; s < samples; ++s) {
            const size_t k = size_t(pick.below(uint64_t(p.shape.numel())));
            const double orig = value[k];
            value[k] = orig + h;
            be->upload(p.value, value.data());
            const double up = loss_at();
            value[k] = orig - h;
            be->upload(p.value, value.data());
            const double down = loss_at();
            value[k] = orig;
            be->upload(p.value, value.data());
            const double fd = (up - down) / (2 * h);
            const double an = grads[i][k];
            EXPECT_NEAR(an, fd, 1e-6 * std::max(std::abs(fd), std::abs(an)) + 1e-9)
                << p.name << "[" << k << "] (" << resolution_name(res) << ")";
            ++checked;
        }
    }
    EXPECT_GT(checked, 3 * 30);
}

TEST(FlexiGradients, MultiresSoftmaxPatch2And4AllParameters) {
    // 8 px: stored patch 2 (4x4 grid), low-res patch 4 (2x2 grid); 2 rows at each.
    check_gradients(small_config(8, 2, 4, 3, false), Res::multires, 4);
}

TEST(FlexiGradients, MultiresSigmoidNonIntegerRatioAllParameters) {
    // 12 px: stored patch 3 (4x4 grid), low-res patch 4 (3x3 grid): non-integer resize ratios.
    ModelConfig cfg = small_config(12, 3, 4, 1, true);
    cfg.activation = Activation::quick_gelu;
    cfg.flexi_fraction = 0.25;  // 1 of 4 rows at low resolution
    check_gradients(cfg, Res::multires, 4);
}

TEST(FlexiGradients, MultiresWithAFinerSecondPatchSize) {
    // The "low" patch may also be finer than the stored one (PI-resize downsamples the kernel).
    check_gradients(small_config(8, 4, 2, 1, false), Res::multires, 4);
}

TEST(FlexiGradients, LowResolutionOnly) { check_gradients(small_config(8, 2, 4, 1, false), Res::low, 3); }

// Embeddings of a batch at resolution r.
std::vector<double> image_embeddings_at(ClipModel& model, const Batch& batch, int64_t B, Res r) {
    model.set_batch(B, r);
    model.set_inputs(batch.images.data(), batch.tokens.data());
    model.forward_image();
    return to_host(model.backend(), model.image_embeddings());
}

TEST(FlexiModel, LowResolutionScoringEqualsTheMultiresRows) {
    for (const char* backend : {"cpu-f64", "cpu"}) {
        auto be = make_backend(backend);
        const ModelConfig cfg = small_config(8, 2, 4, 3, false);
        const int64_t B = 5, D = cfg.embed_dim;
        ClipModel model(*be, cfg, B);
        model.init_weights(3);
        jitter_weights(model, *be);
        const Batch batch = random_batch(cfg, B, 8);
        const std::vector<double> multi = image_embeddings_at(model, batch, B, Res::multires);
        const int64_t k = model.low_rows();
        EXPECT_EQ(k, 3);  // round(0.5 * 5)
        const std::vector<double> low = image_embeddings_at(model, batch, B, Res::low);
        const std::vector<double> full = image_embeddings_at(model, batch, B, Res::full);
        const double tol = std::string(backend) == "cpu" ? 1e-6 : 1e-13;
        double diff_low_full = 0;
        for (int64_t i = 0; i < B * D; ++i) {
            EXPECT_NEAR(multi[size_t(i)], i < k * D ? low[size_t(i)] : full[size_t(i)], tol) << backend << " " << i;
            diff_low_full = std::max(diff_low_full, std::abs(low[size_t(i)] - full[size_t(i)]));
        }
        EXPECT_GT(diff_low_full, 1e-3);  // the two resolutions do differ
        // Scoring then training: the train step puts the multires layout back.
        model.set_batch(2, Res::low);
        auto coll = make_single_process_collectives(*be);
        ContrastiveLoss loss(*be, LossKind::softmax, B, D, *coll);
        model.set_batch(B, Res::full);
        TrainStep step(model, loss, *coll);
        model.set_batch(2, Res::low);
        EXPECT_TRUE(std::isfinite(step.compute_gradients(batch.images.data(), batch.tokens.data())));
        EXPECT_EQ(model.resolution(), Res::multires);
        EXPECT_EQ(model.batch(), B);
    }
}

TEST(FlexiModel, LowResolutionIsThePlainModelWithResizedWeights) {
    // A flexi model at patch p' must equal a plain patch-p' model whose conv1 is W Rᵀ
    // and whose positional grid is M pos (host float64), all other weights shared.
    auto be = make_backend("cpu-f64");
    const ModelConfig cfg = small_config(12, 3, 4, 3, false);  // 4x4 grid -> 3x3 grid
    ModelConfig plain_cfg = cfg;
    plain_cfg.patch_size = 4;
    plain_cfg.flexi_patch = 0;
    const int64_t B = 3;
    ClipModel flexi(*be, cfg, B), plain(*be, plain_cfg, B);
    flexi.init_weights(4);
    jitter_weights(flexi, *be);
    const std::vector<double> r = pi_resize_matrix(3, 4), m = bilinear_resize_matrix(4, 3);
    for (size_t i = 0; i < flexi.params().size(); ++i) {
        const Parameter& src = flexi.params()[i];
        Parameter& dst = plain.params().get(src.name);
        std::vector<double> v = flexi.params().values_to_host(i);
        if (src.name == "visual.conv1.weight") {  // [8*3, 9] -> [8*3, 16]
            std::vector<double> w(size_t(8 * 3 * 16), 0.0);
            for (size_t oc = 0; oc < 24; ++oc)
                for (size_t a = 0; a < 16; ++a)
                    for (size_t b = 0; b < 9; ++b) w[oc * 16 + a] += r[a * 9 + b] * v[oc * 9 + b];
            v = w;
        } else if (src.name == "visual.positional_embedding") {  // [17, 8] -> [10, 8]
            std::vector<double> pos(size_t(10 * 8), 0.0);
            for (size_t c = 0; c < 8; ++c) pos[c] = v[c];
            for (size_t a = 0; a < 9; ++a)
                for (size_t b = 0; b < 16; ++b)
                    for (size_t c = 0; c < 8; ++c) pos[(1 + a) * 8 + c] += m[a * 16 + b] * v[(1 + b) * 8 + c];
            v = pos;
        }
        ASSERT_EQ(int64_t(v.size()), dst.shape.numel()) << src.name;
        be->upload(dst.value, v.data());
    }
    const Batch batch = random_batch(cfg, B, 21);
    const std::vector<double> ours = image_embeddings_at(flexi, batch, B, Res::low);
    const std::vector<double> ref = image_embeddings_at(plain, batch, B, Res::full);
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(ours[i], ref[i], 1e-12) << i;
}

TEST(FlexiModel, FlexiPatchEqualToPatchSizeIsExactlyThePlainModel) {
    auto be = make_backend("cpu");  // fp32: bit-for-bit, not merely close
    ModelConfig plain_cfg = small_config(8, 2, 0, 3, false);
    ModelConfig flexi_cfg = plain_cfg;
    flexi_cfg.flexi_patch = 2;
    const int64_t B = 4;
    ClipModel plain(*be, plain_cfg, B), flexi(*be, flexi_cfg, B);
    plain.init_weights(5);
    flexi.init_weights(5);
    EXPECT_EQ(plain.activation_bytes(), flexi.activation_bytes());
    auto coll = make_single_process_collectives(*be);
    ContrastiveLoss loss_a(*be, LossKind::softmax, B, plain_cfg.embed_dim, *coll);
    ContrastiveLoss loss_b(*be, LossKind::softmax, B, plain_cfg.embed_dim, *coll);
    TrainStep step_a(plain, loss_a, *coll), step_b(flexi, loss_b, *coll);
    EXPECT_TRUE(step_b.multires());
    const Batch batch = random_batch(plain_cfg, B, 2);
    const double la = step_a.compute_gradients(batch.images.data(), batch.tokens.data());
    const double lb = step_b.compute_gradients(batch.images.data(), batch.tokens.data());
    EXPECT_EQ(la, lb);
    EXPECT_EQ(flexi.low_rows(), 0);
    EXPECT_EQ(to_host(*be, plain.image_embeddings()), to_host(*be, flexi.image_embeddings()));
    for (size_t i = 0; i < plain.params().size(); ++i)
        EXPECT_EQ(plain.params().grads_to_host(i), flexi.params().grads_to_host(i)) << plain.params()[i].name;
}

TEST(FlexiModel, ResolutionsNeedAFlexiConfig) {
    auto be = make_backend("cpu");
    ClipModel model(*be, small_config(8, 2, 0, 1, false), 2);
    EXPECT_THROW(model.set_batch(2, Res::low), Error);
    EXPECT_EQ(model.resolution(), Res::full);  // still usable
    auto coll = make_single_process_collectives(*be);
    ContrastiveLoss loss(*be, LossKind::softmax, 2, 6, *coll);
    TrainStep step(model, loss, *coll);
    EXPECT_FALSE(step.multires());
    EXPECT_THROW(step.set_multires(true), Error);
}

// ---------------------------------------------------------------- config and accounting

TEST(FlexiConfig, KeysParseAndBadValuesNameTheKey) {
    namespace po = boost::program_options;
    const char* argv[] = {"x", "--model.preset", "tiny", "--model.flexi_patch", "14", "--model.flexi_fraction", "0.25"};
    po::variables_map vm;
    po::store(po::parse_command_line(7, argv, model_options()), vm);
    const ModelConfig c = model_config_from(vm);
    EXPECT_EQ(c.flexi_patch, 14);
    EXPECT_DOUBLE_EQ(c.flexi_fraction, 0.25);
    EXPECT_EQ(c.flexi_rows(256), 64);
    EXPECT_EQ(c.grid_at(14), 2);
    EXPECT_EQ(c.vision_tokens_at(14), 5);
    ModelConfig bad = c;
    bad.flexi_patch = 5;  // 28 % 5 != 0
    try {
        bad.validate();
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("model.flexi_patch"), std::string::npos) << e.what();
    }
    bad = c;
    bad.flexi_fraction = 1.5;
    EXPECT_THROW(bad.validate(), Error);
    EXPECT_EQ(ModelConfig::preset("tiny").flexi_rows(256), 0);  // off by default
}

TEST(FlexiConfig, ComputeAccountingOfTheTinyRecipe) {
    ModelConfig c = ModelConfig::preset("tiny");
    EXPECT_DOUBLE_EQ(c.flexi_flop_ratio(), 1.0);
    EXPECT_DOUBLE_EQ(c.forward_flops_per_pair(), c.image_forward_flops() + c.text_forward_flops());
    EXPECT_DOUBLE_EQ(c.forward_flops_per_pair(7), c.forward_flops_per_pair());
    c.flexi_patch = 14;
    const double A = c.flexi_flop_ratio(), F = c.forward_flops_per_pair();
    EXPECT_GT(A, 0.0);
    EXPECT_LT(A, 1.0);
    EXPECT_DOUBLE_EQ(A, c.forward_flops_per_pair(14) / F);
    EXPECT_DOUBLE_EQ(c.flexi_image_flop_ratio(), c.image_forward_flops(14) / c.image_forward_flops());
    EXPECT_LT(c.flexi_image_flop_ratio(), A);  // the text tower costs the same at both resolutions
    // docs/jest.md §Compute accounting: half of each batch at low resolution costs 3F(0.5 + 0.5A) per pair.
    EXPECT_NEAR(c.train_flops_per_pair(256), 3 * F * (0.5 + 0.5 * A), 1e-9 * F);
    std::printf("tiny, flexi patch 14: F = %.4g FLOPs/pair (image %.4g at patch 7, %.4g at patch 14), A = %.4f\n", F,
                c.image_forward_flops(), c.image_forward_flops(14), A);
}

TEST(FlexiModel, TinyRecipeMemoryIsSizedForEveryResolution) {
    auto be = make_backend("cpu");
    ModelConfig cfg = ModelConfig::preset("tiny");
    cfg.flexi_patch = 14;
    for (int64_t B : {128, 256}) {
        ClipModel model(*be, cfg, B);
        const size_t full = model.activation_bytes_for(B, Res::full);
        const size_t multi = model.activation_bytes_for(B, Res::multires);
        const size_t low = model.activation_bytes_for(B, Res::low);
        EXPECT_EQ(model.activation_bytes(), std::max({full, multi, low}));
        EXPECT_LT(multi, full);
        EXPECT_LT(low, multi);
        ClipModel plain(*be, ModelConfig::preset("tiny"), B);
        EXPECT_EQ(model.activation_bytes(), plain.activation_bytes());
        std::printf("%s\n", model.memory_report().c_str());
        model.set_batch(B, Res::multires);
        model.set_batch(B, Res::low);
        model.set_batch(B / 2, Res::multires);
    }
}

}  // namespace
}  // namespace curaclip
