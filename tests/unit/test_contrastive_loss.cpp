// Contrastive losses on one process (cpu-f64): the values equal a direct float64
// formula, and the gradients w.r.t. embeddings, logit scale and logit bias
// equal central finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/registry.h"
#include "loss/contrastive_loss.h"
#include "mpi/collectives.h"

namespace curaclip {
namespace {

using Vec = std::vector<double>;

// Rows of unit length, from a seed.
Vec random_unit_rows(int64_t rows, int64_t dim, uint32_t seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<double> nd(0.0, 1.0);
    Vec x(size_t(rows * dim));
    for (int64_t i = 0; i < rows; ++i) {
        double s = 0.0;
        for (int64_t k = 0; k < dim; ++k) {
            const double v = nd(gen);
            x[size_t(i * dim + k)] = v;
            s += v * v;
        }
        for (int64_t k = 0; k < dim; ++k) x[size_t(i * dim + k)] /= std::sqrt(s);
    }
    return x;
}

double dot(const Vec& a, const Vec& b, int64_t i, int64_t j, int64_t D) {
    double s = 0.0;
    for (int64_t k = 0; k < D; ++k) s += a[size_t(i * D + k)] * b[size_t(j * D + k)];
    return s;
}

// The CLIP loss straight from its definition: mean over the batch of
// (CE(image i vs all texts) + CE(text i vs all images)) / 2.
double softmax_reference(const Vec& img, const Vec& txt, double t, int64_t B, int64_t D) {
    const double s = std::exp(t);
    double total = 0.0;
    for (int64_t i = 0; i < B; ++i) {
        for (int dir = 0; dir < 2; ++dir) {
            const Vec& a = dir == 0 ? img : txt;
            const Vec& b = dir == 0 ? txt : img;
            double mx = -1e300;
            for (int64_t j = 0; j < B; ++j) mx = std::max(mx, s * dot(a, b, i, j, D));
            double se = 0.0;
            for (int64_t j = 0; j < B; ++j) se += std::exp(s * dot(a, b, i, j, D) - mx);
            total += 0.5 * (mx + std::log(se) - s * dot(a, b, i, i, D));
        }
    }
    return total / double(B);
}

// SigLIP: -(1/B) sum_ij log sigmoid(z_ij (exp(t) x_i.y_j + b)).
double sigmoid_reference(const Vec& img, const Vec& txt, double t, double bias, int64_t B,
                         int64_t D) {
    double total = 0.0;
    for (int64_t i = 0; i < B; ++i)
        for (int64_t j = 0; j < B; ++j) {
            const double z = i == j ? 1.0 : -1.0;
            const double u = z * (std::exp(t) * dot(img, txt, i, j, D) + bias);
            total += -(std::min(u, 0.0) - std::log1p(std::exp(-std::abs(u))));  // -log sigmoid(u)
        }
    return total / double(B);
}

struct Fixture {
    static constexpr int64_t B = 6, D = 5;
    std::unique_ptr<Backend> be = make_backend("cpu-f64");
    std::unique_ptr<Collectives> coll = make_single_process_collectives(*be);
    Arena arena{*be, 1 << 16, "test"};
    Tensor img = arena.alloc({B, D}, DType::f64), txt = arena.alloc({B, D}, DType::f64);
    Tensor scale = arena.alloc({1}, DType::f64), bias = arena.alloc({1}, DType::f64);
    Tensor dimg = arena.alloc({B, D}, DType::f64), dtxt = arena.alloc({B, D}, DType::f64);
    Tensor dscale = arena.alloc({1}, DType::f64), dbias = arena.alloc({1}, DType::f64);
    Vec img_h = random_unit_rows(B, D, 1), txt_h = random_unit_rows(B, D, 2);
    double t = std::log(10.0), b = -2.0;

    void upload() {
        be->upload(img, img_h.data());
        be->upload(txt, txt_h.data());
        be->upload(scale, &t);
        be->upload(bias, &b);
    }
    double loss_of(ContrastiveLoss& loss) {
        upload();
        loss.forward(img, txt, scale, bias);
        return loss.loss();
    }
    static double get(Backend& be, Tensor x, size_t i) {
        Vec h(size_t(x.numel()));
        be.download(h.data(), x);
        return h[i];
    }
};

double reference(LossKind kind, const Fixture& f) {
    return kind == LossKind::softmax
               ? softmax_reference(f.img_h, f.txt_h, f.t, Fixture::B, Fixture::D)
               : sigmoid_reference(f.img_h, f.txt_h, f.t, f.b, Fixture::B, Fixture::D);
}

class ContrastiveLossTest : public ::testing::TestWithParam<LossKind> {};

TEST_P(ContrastiveLossTest, ValueMatchesDirectFormula) {
    Fixture f;
    ContrastiveLoss loss(*f.be, GetParam(), Fixture::B, Fixture::D, *f.coll);
    for (double t : {0.0, std::log(10.0), std::log(1.0 / 0.07)}) {
        f.t = t;
        const double got = f.loss_of(loss);
        const double want = reference(GetParam(), f);
        EXPECT_NEAR(got, want, 1e-7 * std::abs(want)) << "t = " << t;
    }
}

TEST_P(ContrastiveLossTest, GradientsMatchFiniteDifferences) {
    Fixture f;
    const LossKind kind = GetParam();
    ContrastiveLoss loss(*f.be, kind, Fixture::B, Fixture::D, *f.coll);
    f.upload();
    for (Tensor g : {f.dimg, f.dtxt, f.dscale, f.dbias}) f.be->fill(g, 0.0f);
    loss.forward_backward(f.img, f.txt, f.scale, f.bias, f.dimg, f.dtxt, f.dscale, f.dbias);
    const double value = loss.loss();

    const double h = 1e-6;
    auto check = [&](const char* what, Vec& host, Tensor grad) {
        Vec analytic(host.size());
        f.be->download(analytic.data(), grad);
        double max_abs = 0.0, max_err = 0.0;
        for (size_t i = 0; i < host.size(); ++i) {
            const double keep = host[i];
            host[i] = keep + h;
            const double up = f.loss_of(loss);
            host[i] = keep - h;
            const double down = f.loss_of(loss);
            host[i] = keep;
            const double fd = (up - down) / (2 * h);
            max_abs = std::max(max_abs, std::abs(analytic[i]));
            max_err = std::max(max_err, std::abs(fd - analytic[i]));
            EXPECT_NEAR(analytic[i], fd, 1e-6 * std::max(std::abs(fd), 1e-3)) << what << "[" << i << "]";
        }
        EXPECT_LE(max_err, 1e-6 * max_abs) << what;
        EXPECT_GT(max_abs, 0.0) << what;
    };
    check("dimg", f.img_h, f.dimg);
    check("dtxt", f.txt_h, f.dtxt);
    // Scalars: perturb through the fixture's t and b.
    auto check_scalar = [&](const char* what, double& x, Tensor grad) {
        const double an = Fixture::get(*f.be, grad, 0);
        const double keep = x;
        x = keep + h;
        const double up = f.loss_of(loss);
        x = keep - h;
        const double down = f.loss_of(loss);
        x = keep;
        const double fd = (up - down) / (2 * h);
        EXPECT_NEAR(an, fd, 1e-6 * std::max(std::abs(fd), 1e-3)) << what;
    };
    check_scalar("dscale", f.t, f.dscale);
    if (kind == LossKind::sigmoid) {
        check_scalar("dbias", f.b, f.dbias);
    } else {
        EXPECT_EQ(Fixture::get(*f.be, f.dbias, 0), 0.0) << "softmax must not touch dbias";
    }
    // The forward-only value equals the one of the backward pass.
    EXPECT_DOUBLE_EQ(f.loss_of(loss), value);
}

TEST_P(ContrastiveLossTest, GradientsAccumulate) {
    Fixture f;
    ContrastiveLoss loss(*f.be, GetParam(), Fixture::B, Fixture::D, *f.coll);
    f.upload();
    for (Tensor g : {f.dimg, f.dtxt, f.dscale, f.dbias}) f.be->fill(g, 0.0f);
    loss.forward_backward(f.img, f.txt, f.scale, f.bias, f.dimg, f.dtxt, f.dscale, f.dbias);
    Vec once(size_t(f.dimg.numel())), twice(once.size());
    f.be->download(once.data(), f.dimg);
    const double s1 = Fixture::get(*f.be, f.dscale, 0);
    loss.forward_backward(f.img, f.txt, f.scale, f.bias, f.dimg, f.dtxt, f.dscale, f.dbias);
    f.be->download(twice.data(), f.dimg);
    for (size_t i = 0; i < once.size(); ++i) EXPECT_NEAR(twice[i], 2 * once[i], 1e-14);
    EXPECT_NEAR(Fixture::get(*f.be, f.dscale, 0), 2 * s1, 1e-14);
    // Only one of the embedding gradients requested: it is the same as with both.
    f.be->fill(f.dtxt, 0.0f);
    loss.forward_backward(f.img, f.txt, f.scale, f.bias, {}, f.dtxt, {}, {});
    Vec only_txt(once.size()), both_txt(once.size());
    f.be->download(only_txt.data(), f.dtxt);
    f.be->fill(f.dtxt, 0.0f);
    f.be->fill(f.dimg, 0.0f);
    loss.forward_backward(f.img, f.txt, f.scale, f.bias, f.dimg, f.dtxt, {}, {});
    f.be->download(both_txt.data(), f.dtxt);
    for (size_t i = 0; i < once.size(); ++i) EXPECT_NEAR(only_txt[i], both_txt[i], 1e-15);
}

INSTANTIATE_TEST_SUITE_P(Kinds, ContrastiveLossTest,
                         ::testing::Values(LossKind::softmax, LossKind::sigmoid),
                         [](const auto& info) { return std::string(loss_kind_name(info.param)); });

TEST(ContrastiveLoss, ParseKind) {
    EXPECT_EQ(parse_loss_kind("softmax"), LossKind::softmax);
    EXPECT_EQ(parse_loss_kind("CLIP"), LossKind::softmax);
    EXPECT_EQ(parse_loss_kind("sigmoid"), LossKind::sigmoid);
    EXPECT_EQ(parse_loss_kind("siglip"), LossKind::sigmoid);
    try {
        parse_loss_kind("hinge");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("hinge"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("sigmoid"), std::string::npos) << e.what();
    }
}

TEST(ContrastiveLoss, RejectsBadInputs) {
    Fixture f;
    EXPECT_THROW(ContrastiveLoss(*f.be, LossKind::softmax, 0, 4, *f.coll), Error);
    EXPECT_THROW(ContrastiveLoss(*f.be, LossKind::softmax, 4, 0, *f.coll), Error);
    ContrastiveLoss wrong_shape(*f.be, LossKind::softmax, Fixture::B, Fixture::D + 1, *f.coll);
    f.upload();
    EXPECT_THROW(wrong_shape.forward(f.img, f.txt, f.scale, {}), Error);
    ContrastiveLoss sig(*f.be, LossKind::sigmoid, Fixture::B, Fixture::D, *f.coll);
    EXPECT_THROW(sig.forward(f.img, f.txt, f.scale, {}), Error);  // sigmoid needs a bias
    ContrastiveLoss soft(*f.be, LossKind::softmax, Fixture::B, Fixture::D, *f.coll);
    EXPECT_NO_THROW(soft.forward(f.img, f.txt, f.scale, {}));     // softmax does not
}

}  // namespace
}  // namespace curaclip
