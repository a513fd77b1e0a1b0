// The sharded prefetching loader under 1, 2 and 4 ranks: the concatenation of
// the ranks' slices is the global batch a single process reads (over several
// steps and across epoch boundaries), seek/resume reproduces the batches, the
// prefetch thread shuts down cleanly, and the sequential reader tiles the file.
//
// EXPECT_* only (no ASSERT_*) before collective calls, so no rank leaves a test
// early while the others wait.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "io/dataset_writer.h"
#include "io/loader.h"
#include "mpi/communicator.h"

namespace curaclip::io {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kN = 103;  // not a multiple of the batch: the last partial batch is dropped
constexpr int kS = 4, kC = 2, kCtx = 5;
constexpr int64_t kRow = kS * kS * kC;

uint8_t pixel(int64_t i, int64_t k) { return uint8_t((i * 13 + k * 7) % 251); }

// A dataset whose every value says which row it came from; rank 0 writes it.
class LoaderTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        const Communicator world = Communicator::world();
        int64_t id = world.rank() == 0 ? int64_t(::getpid()) : 0;
        world.broadcast(&id, 1, 0);
        dir_ = (fs::temp_directory_path() / ("curaclip_loader_" + std::to_string(id))).string();
        path_ = dir_ + "/data.h5";
        if (world.rank() == 0) {
            fs::create_directories(dir_);
            DatasetContents d;
            d.count = kN;
            d.image_size = kS;
            d.channels = kC;
            d.context_length = kCtx;
            for (int64_t i = 0; i < kN; ++i) {
                for (int64_t k = 0; k < kRow; ++k) d.images.push_back(pixel(i, k));
                for (int t = 0; t < kCtx; ++t) d.tokens.push_back(int32_t(i * 10 + t));
                d.captions.push_back("row " + std::to_string(i));
                d.labels.push_back(int32_t(i % 10));
                d.corrupted.push_back(uint8_t(i % 3 == 0));
            }
            DatasetAttributes a;
            a.tokenizer_id = "test";
            a.source = "test_loader";
            write_dataset(path_, d, a);
        }
        world.barrier();
    }
    static void TearDownTestSuite() {
        const Communicator world = Communicator::world();
        world.barrier();
        if (world.rank() == 0) {
            std::error_code ec;
            fs::remove_all(dir_, ec);
        }
    }
    static std::string dir_, path_;
};
std::string LoaderTest::dir_, LoaderTest::path_;

// Every row of a batch holds what the file has at its index.
void expect_rows_match_indices(const Batch& b) {
    EXPECT_EQ(b.images.size(), size_t(b.size * kRow));
    for (int64_t r = 0; r < b.size; ++r) {
        const int64_t i = b.indices[size_t(r)];
        EXPECT_EQ(b.images[size_t(r * kRow + kRow - 1)], pixel(i, kRow - 1));
        EXPECT_EQ(b.images[size_t(r * kRow)], pixel(i, 0));
        EXPECT_EQ(b.tokens[size_t(r * kCtx + 2)], int32_t(i * 10 + 2));
        EXPECT_EQ(b.labels[size_t(r)], int32_t(i % 10));
        EXPECT_EQ(b.corrupted[size_t(r)], uint8_t(i % 3 == 0));
    }
}

TEST_F(LoaderTest, RankSlicesConcatenateToTheSingleProcessBatch) {
    const Communicator world = Communicator::world();
    const int P = world.size();
    const Communicator self = world.split(world.rank(), 0);  // a 1-rank "single process" run
    const int64_t B = 8;
    Loader sharded(path_, B, world, 42, LoaderOptions{true, 2, DatasetExpect{kS, kC, kCtx, "test"}});
    Loader single(path_, B, self, 42);
    EXPECT_EQ(sharded.local_batch(), B / P);
    EXPECT_EQ(sharded.steps_per_epoch(), kN / B);  // 12: rows beyond 96 dropped per epoch

    std::vector<std::vector<int64_t>> epoch_rows(3);
    const int64_t steps = 3 * sharded.steps_per_epoch();  // three epochs, two boundaries
    for (int64_t s = 0; s < steps; ++s) {
        const LoaderPosition pos = sharded.position();
        EXPECT_EQ(pos.epoch, s / 12);
        EXPECT_EQ(pos.step, s % 12);
        const Batch local = sharded.next();
        const Batch global = single.next();
        EXPECT_EQ(local.epoch, pos.epoch);
        EXPECT_EQ(local.step, pos.step);
        EXPECT_EQ(local.offset, world.rank() * (B / P));
        expect_rows_match_indices(local);
        // Gather the slices in rank order.
        std::vector<int64_t> idx(static_cast<size_t>(B));
        std::vector<uint8_t> im(static_cast<size_t>(B * kRow)), cor(static_cast<size_t>(B));
        std::vector<int32_t> tk(static_cast<size_t>(B * kCtx)), lb(static_cast<size_t>(B));
        world.allgather(local.indices.data(), idx.data(), size_t(B / P));
        world.allgather(local.images.data(), im.data(), size_t(B / P * kRow));
        world.allgather(local.tokens.data(), tk.data(), size_t(B / P * kCtx));
        world.allgather(local.labels.data(), lb.data(), size_t(B / P));
        world.allgather(local.corrupted.data(), cor.data(), size_t(B / P));
        EXPECT_EQ(idx, global.indices) << "step " << s;
        EXPECT_EQ(im, global.images) << "step " << s;
        EXPECT_EQ(tk, global.tokens) << "step " << s;
        EXPECT_EQ(lb, global.labels) << "step " << s;
        EXPECT_EQ(cor, global.corrupted) << "step " << s;
        EXPECT_EQ(idx, sharded.global_indices(pos));
        epoch_rows[size_t(s / 12)].insert(epoch_rows[size_t(s / 12)].end(), idx.begin(), idx.end());
    }
    // Each epoch visits 96 distinct rows, in an order of its own.
    for (auto rows : epoch_rows) {
        EXPECT_EQ(rows.size(), 96u);
        std::sort(rows.begin(), rows.end());
        EXPECT_EQ(std::unique(rows.begin(), rows.end()), rows.end());
        EXPECT_GE(rows.front(), 0);
        EXPECT_LT(rows.back(), kN);
    }
    EXPECT_NE(epoch_rows[0], epoch_rows[1]);
    // The order is a fixed function of (seed, epoch): pin a few values so a
    // change of the shuffle (which would break resuming old runs) is noticed.
    const auto e0 = Loader::epoch_order(kN, 42, 0);
    EXPECT_EQ(std::vector<int64_t>(epoch_rows[0].begin(), epoch_rows[0].begin() + 8),
              std::vector<int64_t>(e0.begin(), e0.begin() + 8));
    EXPECT_NE(Loader::epoch_order(kN, 43, 0), e0);
    EXPECT_EQ(Loader::epoch_order(kN, 42, 0, false)[5], 5);
}

TEST_F(LoaderTest, SeekResumesExactly) {
    const Communicator world = Communicator::world();
    const int64_t B = 4;
    const int64_t spe = kN / B;  // 25
    Loader a(path_, B, world, 7);
    for (int s = 0; s < 23; ++s) a.next();
    const LoaderPosition checkpoint = a.position();
    EXPECT_EQ(checkpoint, (LoaderPosition{0, 23}));
    std::vector<std::vector<int64_t>> after;
    for (int s = 0; s < 6; ++s) after.push_back(a.next().indices);  // crosses into epoch 1
    EXPECT_EQ(a.position(), (LoaderPosition{1, 29 - spe}));

    // A fresh loader (a resumed run), with and without a prefetch thread.
    for (int prefetch : {0, 1, 3}) {
        Loader b(path_, B, world, 7, LoaderOptions{true, prefetch, {}});
        b.next();  // something already prefetched/consumed: seek must drop it
        b.seek(checkpoint);
        EXPECT_EQ(b.position(), checkpoint);
        for (int s = 0; s < 6; ++s) {
            const Batch x = b.next();
            EXPECT_EQ(x.indices, after[size_t(s)]) << "prefetch " << prefetch << " step " << s;
            expect_rows_match_indices(x);
        }
    }
    // Seeking the same loader backwards.
    a.seek(checkpoint);
    for (int s = 0; s < 6; ++s) EXPECT_EQ(a.next().indices, after[size_t(s)]);
    EXPECT_THROW(a.seek(LoaderPosition{0, spe}), Error);
    EXPECT_THROW(a.seek(LoaderPosition{-1, 0}), Error);
}

TEST_F(LoaderTest, PrefetchThreadShutsDownCleanly) {
    const Communicator world = Communicator::world();
    const auto t0 = std::chrono::steady_clock::now();
    for (int k = 0; k < 20; ++k) {
        Loader l(path_, 4, world, 1, LoaderOptions{true, 3, {}});
        if (k % 2) l.next();  // the thread is blocked on a full queue or mid-read
        if (k % 3 == 0) l.seek(LoaderPosition{2, 3});
    }
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 30.0);
}

TEST_F(LoaderTest, Refusals) {
    const Communicator world = Communicator::world();
    const int P = world.size();
    if (P > 1) {
        EXPECT_THROW({ Loader l(path_, P + 1, world, 1); }, Error);  // not a multiple of P
    }
    EXPECT_THROW({ Loader l(path_, 104 * P, world, 1); }, Error);  // larger than the dataset
    EXPECT_THROW({ Loader l(path_, 4, world, 1, LoaderOptions{true, 2, DatasetExpect{28, -1, -1, ""}}); }, Error);
    EXPECT_THROW({ Loader l(path_, 4, world, 1, LoaderOptions{true, 2, DatasetExpect{-1, -1, -1, "other"}}); }, Error);
    EXPECT_THROW({ Loader l(dir_ + "/missing.h5", 4, world, 1); }, Error);
    world.barrier();
}

TEST_F(LoaderTest, SequentialReaderTilesTheFile) {
    const Communicator world = Communicator::world();
    SequentialReader mine(path_, 10, &world);
    SequentialReader all(path_, 10);
    EXPECT_EQ(all.begin(), 0);
    EXPECT_EQ(all.end(), kN);
    int64_t begin_end[2] = {mine.begin(), mine.end()};
    std::vector<int64_t> ranges(size_t(2 * world.size()));
    world.allgather(begin_end, ranges.data(), 2);
    EXPECT_EQ(ranges.front(), 0);
    EXPECT_EQ(ranges.back(), kN);
    for (int r = 1; r < world.size(); ++r) EXPECT_EQ(ranges[size_t(2 * r)], ranges[size_t(2 * r - 1)]);
    Batch b;
    int64_t next = mine.begin();
    while (mine.next(b)) {
        EXPECT_EQ(b.offset, next);
        EXPECT_LE(b.size, 10);
        for (int64_t r = 0; r < b.size; ++r) EXPECT_EQ(b.indices[size_t(r)], next + r);
        expect_rows_match_indices(b);
        next += b.size;
    }
    EXPECT_EQ(next, mine.end());
    mine.reset();
    EXPECT_TRUE(mine.next(b));
    EXPECT_EQ(b.offset, mine.begin());
}

}  // namespace
}  // namespace curaclip::io
