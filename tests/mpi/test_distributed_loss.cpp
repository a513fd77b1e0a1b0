// Distributed contrastive losses and the communication under them, on 1, 2, 4 ranks.
//
// Every rank generates the same global batch from a seed, feeds its slice to the
// distributed loss, and checks the global loss, its own gradient slices and the
// rank-summed dscale/dbias against a single-process computation on the full
// batch that it runs itself.
//
// No ASSERT_* before a collective call: a rank that left a test early would
// leave the others waiting. EXPECT_* only.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "backend/registry.h"
#include "loss/contrastive_loss.h"
#include "mpi/collectives.h"
#include "mpi/communicator.h"

namespace curaclip {
namespace {

using Vec = std::vector<double>;

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

Vec download(Backend& be, Tensor t) {
    Vec h(size_t(t.numel()));
    be.download(h.data(), t);
    return h;
}

// max |a - b| / max |b| over the elements (b the reference).
double rel_max_err(const Vec& a, const Vec& b) {
    double err = 0.0, ref = 0.0;
    for (size_t i = 0; i < a.size(); ++i) {
        err = std::max(err, std::abs(a[i] - b[i]));
        ref = std::max(ref, std::abs(b[i]));
    }
    return ref > 0.0 ? err / ref : err;
}

struct Result {
    double loss = 0.0;
    Vec dimg, dtxt;  // [rows, D]
    double dscale = 0.0, dbias = 0.0;
};

// Loss and gradients of `rows` rows starting at global row `first`.
Result run_loss(Backend& be, Collectives& coll, LossKind kind, const Vec& img_g, const Vec& txt_g,
                int64_t first, int64_t rows, int64_t D, double t, double b, bool sum_scalars) {
    ContrastiveLoss loss(be, kind, rows, D, coll);
    const DType dt = be.dtype();
    Arena arena(be, 1 << 20, "test");
    Tensor img = arena.alloc({rows, D}, dt), txt = arena.alloc({rows, D}, dt);
    Tensor dimg = arena.alloc({rows, D}, dt), dtxt = arena.alloc({rows, D}, dt);
    Tensor scale = arena.alloc({1}, dt), bias = arena.alloc({1}, dt);
    Tensor dscale = arena.alloc({1}, dt), dbias = arena.alloc({1}, dt);
    be.upload(img, img_g.data() + first * D);
    be.upload(txt, txt_g.data() + first * D);
    be.upload(scale, &t);
    be.upload(bias, &b);
    for (Tensor g : {dimg, dtxt, dscale, dbias}) be.fill(g, 0.0f);
    loss.forward_backward(img, txt, scale, bias, dimg, dtxt, dscale, dbias);
    if (sum_scalars) {  // what the trainer's gradient all-reduce does
        coll.allreduce_sum(dscale);
        coll.allreduce_sum(dbias);
    }
    Result r;
    r.loss = loss.loss();
    r.dimg = download(be, dimg);
    r.dtxt = download(be, dtxt);
    r.dscale = download(be, dscale)[0];
    r.dbias = download(be, dbias)[0];
    return r;
}

using LossCase = std::tuple<LossKind, std::string /*backend*/, bool /*staged*/>;

class DistributedLoss : public ::testing::TestWithParam<LossCase> {};

TEST_P(DistributedLoss, MatchesSingleProcessOnTheFullBatch) {
    const auto [kind, backend, staged] = GetParam();
    const Communicator world = Communicator::world();
    const int P = world.size(), rank = world.rank();
    const int64_t Bl = 12 % P == 0 ? 12 / P : 3, Bg = Bl * P, D = 8;
    auto be = make_backend(backend);
    auto coll = make_mpi_collectives(world, *be, staged);
    EXPECT_EQ(coll->size(), P);
    EXPECT_EQ(coll->rank(), rank);

    const Vec img_g = random_unit_rows(Bg, D, 1234), txt_g = random_unit_rows(Bg, D, 5678);
    // Softmax: CLIP's initial scale; sigmoid: SigLIP's initial t, b shifted so
    // that positives and negatives both carry weight.
    const double t = kind == LossKind::softmax ? std::log(1.0 / 0.07) : std::log(10.0);
    const double b = kind == LossKind::softmax ? 0.0 : -2.0;

    const Result dist = run_loss(*be, *coll, kind, img_g, txt_g, rank * Bl, Bl, D, t, b, true);
    auto single = make_single_process_collectives(*be);
    const Result ref = run_loss(*be, *single, kind, img_g, txt_g, 0, Bg, D, t, b, false);

    const double tol = 1e-6;
    EXPECT_NEAR(dist.loss, ref.loss, tol * std::abs(ref.loss)) << "rank " << rank;
    const Vec ref_dimg(ref.dimg.begin() + rank * Bl * D, ref.dimg.begin() + (rank + 1) * Bl * D);
    const Vec ref_dtxt(ref.dtxt.begin() + rank * Bl * D, ref.dtxt.begin() + (rank + 1) * Bl * D);
    EXPECT_LE(rel_max_err(dist.dimg, ref_dimg), tol) << "rank " << rank;
    EXPECT_LE(rel_max_err(dist.dtxt, ref_dtxt), tol) << "rank " << rank;
    EXPECT_NEAR(dist.dscale, ref.dscale, tol * std::abs(ref.dscale)) << "rank " << rank;
    EXPECT_NEAR(dist.dbias, ref.dbias, tol * std::abs(ref.dbias)) << "rank " << rank;
    if (kind == LossKind::softmax) {
        EXPECT_EQ(dist.dbias, 0.0);
    }

    // Every rank reports the same global loss, bit for bit.
    double mine = dist.loss, lo = dist.loss, hi = dist.loss;
    world.allreduce_min(&lo, 1);
    world.allreduce_max(&hi, 1);
    EXPECT_EQ(lo, mine);
    EXPECT_EQ(hi, mine);
}

INSTANTIATE_TEST_SUITE_P(
    All, DistributedLoss,
    ::testing::Combine(::testing::Values(LossKind::softmax, LossKind::sigmoid),
                       ::testing::Values(std::string("cpu"), std::string("cpu-f64")),
                       ::testing::Values(false, true)),
    [](const auto& info) {
        std::string name = loss_kind_name(std::get<0>(info.param));
        name += std::get<1>(info.param) == "cpu" ? "_f32" : "_f64";
        name += std::get<2>(info.param) ? "_staged" : "_direct";
        return name;
    });

// ---- Communicator --------------------------------------------------------------------

TEST(Communicator, SplitByParityInReverseOrder) {
    const Communicator world = Communicator::world();
    const int P = world.size(), r = world.rank();
    Communicator sub = world.split(r % 2, -r);  // key -r: higher world ranks first
    EXPECT_TRUE(sub.valid());
    const int same_parity = (P - r % 2 + 1) / 2;
    EXPECT_EQ(sub.size(), same_parity);
    int higher = 0;  // world ranks of my parity above me come first
    for (int q = r + 2; q < P; q += 2) ++higher;
    EXPECT_EQ(sub.rank(), higher);

    int64_t sum = r;
    sub.allreduce_sum(&sum, 1);
    int64_t want = 0;
    for (int q = r % 2; q < P; q += 2) want += q;
    EXPECT_EQ(sum, want);

    // Moving keeps the one communicator; the moved-from one is empty.
    Communicator moved = std::move(sub);
    EXPECT_FALSE(sub.valid());
    EXPECT_TRUE(moved.valid());
    moved.barrier();

    // MPI_UNDEFINED leaves a rank out.
    Communicator none = world.split(r == 0 ? MPI_UNDEFINED : 0, r);
    EXPECT_EQ(none.valid(), r != 0);
    if (none.valid()) {
        EXPECT_EQ(none.size(), P - 1);
    }

    const LocalRank local = world.local_rank();
    EXPECT_GE(local.rank, 0);
    EXPECT_LT(local.rank, local.size);
    EXPECT_LE(local.size, P);
    world.barrier();
}

TEST(Communicator, TypedCollectives) {
    const Communicator world = Communicator::world();
    const int P = world.size(), r = world.rank();

    std::vector<uint8_t> bytes(3), all_bytes(size_t(3 * P));
    for (int i = 0; i < 3; ++i) bytes[size_t(i)] = uint8_t(10 * r + i);
    world.allgather(bytes.data(), all_bytes.data(), 3);
    for (int q = 0; q < P; ++q)
        for (int i = 0; i < 3; ++i) EXPECT_EQ(all_bytes[size_t(3 * q + i)], uint8_t(10 * q + i));

    int64_t big[2] = {int64_t(r) << 40, -int64_t(r)};
    world.allreduce_max(big, 2);
    EXPECT_EQ(big[0], int64_t(P - 1) << 40);
    EXPECT_EQ(big[1], 0);

    double bc[2] = {r == P - 1 ? 3.5 : 0.0, r == P - 1 ? -1.25 : 0.0};
    world.broadcast(bc, 2, P - 1);
    EXPECT_EQ(bc[0], 3.5);
    EXPECT_EQ(bc[1], -1.25);

    std::vector<int32_t> send(size_t(2 * P)), recv(2);
    for (int i = 0; i < 2 * P; ++i) send[size_t(i)] = i * (r + 1);
    world.reduce_scatter_block(send.data(), recv.data(), 2);
    for (int i = 0; i < 2; ++i) EXPECT_EQ(recv[size_t(i)], (2 * r + i) * P * (P + 1) / 2);

    EXPECT_THROW(world.broadcast(bc, 1, P), Error);  // root out of range, caught before MPI
    // An MPI error comes back as an Error naming the call (every rank errs alike).
    int x = 0;
    try {
        CC_MPI_CHECK(MPI_Bcast(&x, -1, MPI_INT, 0, world.handle()));
        ADD_FAILURE() << "negative count accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("MPI_Bcast"), std::string::npos) << e.what();
    }
}

// ---- Collectives over tensors ----------------------------------------------------------

class TensorCollectives : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(TensorCollectives, AllgatherReduceScatterAllreduce) {
    const auto [backend, staged] = GetParam();
    const Communicator world = Communicator::world();
    const int P = world.size(), r = world.rank();
    auto be = make_backend(backend);
    auto coll = make_mpi_collectives(world, *be, staged);
    const DType dt = be->dtype();
    Arena arena(*be, 1 << 20, "test");
    const int64_t n = 3, C = 4;

    // allgather, float and i32.
    Tensor in = arena.alloc({n, C}, dt), out = arena.alloc({P * n, C}, dt);
    Vec h(size_t(n * C));
    for (size_t i = 0; i < h.size(); ++i) h[i] = 100.0 * r + double(i);
    be->upload(in, h.data());
    coll->allgather(out, in);
    const Vec all = download(*be, out);
    for (int q = 0; q < P; ++q)
        for (int64_t i = 0; i < n * C; ++i) EXPECT_EQ(all[size_t(q * n * C + i)], 100.0 * q + double(i));
    Tensor in_i = arena.alloc({n}, DType::i32), out_i = arena.alloc({P * n}, DType::i32);
    std::vector<int32_t> hi(static_cast<size_t>(n)), all_i(static_cast<size_t>(P * n));
    for (int64_t i = 0; i < n; ++i) hi[size_t(i)] = int32_t(7 * r + i);
    be->upload_raw(in_i, hi.data());
    coll->allgather(out_i, in_i);
    be->download_raw(all_i.data(), out_i);
    for (int q = 0; q < P; ++q)
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(all_i[size_t(q * n + i)], int32_t(7 * q + i));

    // reduce_scatter_sum: in[j] = (r + 1) * (j + 1) -> out[i] = P(P+1)/2 * (r*n*C + i + 1).
    Vec g(size_t(P * n * C));
    for (size_t j = 0; j < g.size(); ++j) g[j] = double(r + 1) * double(j + 1);
    be->upload(out, g.data());
    coll->reduce_scatter_sum(in, out);
    const Vec red = download(*be, in);
    for (int64_t i = 0; i < n * C; ++i)
        EXPECT_EQ(red[size_t(i)], double(P * (P + 1) / 2) * double(r * n * C + i + 1));

    // allreduce_sum on an odd-sized tensor (uneven ownership blocks).
    Tensor x = arena.alloc({7}, dt);
    Vec xs(7);
    for (int i = 0; i < 7; ++i) xs[size_t(i)] = double(r) + i;
    be->upload(x, xs.data());
    coll->allreduce_sum(x);
    const Vec sum = download(*be, x);
    for (int i = 0; i < 7; ++i) EXPECT_EQ(sum[size_t(i)], double(P * (P - 1) / 2) + double(P * i));

    // Sums of inexact values are bitwise identical on every rank.
    Tensor y = arena.alloc({1000}, dt);
    std::mt19937 gen(uint32_t(99 + r));
    std::uniform_real_distribution<double> ud(-1.0, 1.0);
    Vec ys(1000);
    for (double& v : ys) v = ud(gen) * std::pow(10.0, ud(gen) * 4);
    be->upload(y, ys.data());
    coll->allreduce_sum(y);
    const Vec mine = download(*be, y);
    Vec lo = mine, hi2 = mine;
    world.allreduce_min(lo.data(), lo.size());
    world.allreduce_max(hi2.data(), hi2.size());
    EXPECT_EQ(lo, mine);
    EXPECT_EQ(hi2, mine);

    double host[3] = {1.0 * r, 0.5, -2.0};
    coll->allreduce_sum_host(host, 3);
    EXPECT_EQ(host[0], double(P * (P - 1) / 2));
    EXPECT_EQ(host[1], 0.5 * P);
    EXPECT_EQ(host[2], -2.0 * P);

    // Shape errors are caught before any communication (same on every rank).
    EXPECT_THROW(coll->allgather(x, in), Error);
    EXPECT_THROW(coll->reduce_scatter_sum(x, out), Error);
}

INSTANTIATE_TEST_SUITE_P(All, TensorCollectives,
                         ::testing::Combine(::testing::Values(std::string("cpu"),
                                                              std::string("cpu-f64")),
                                            ::testing::Values(false, true)),
                         [](const auto& info) {
                             std::string name = std::get<0>(info.param) == "cpu" ? "f32" : "f64";
                             return name + (std::get<1>(info.param) ? "_staged" : "_direct");
                         });

}  // namespace
}  // namespace curaclip
