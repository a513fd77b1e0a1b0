// `curaclip embed --encoder` over the ranks of the job (issue 14): on 1, 2 or 4 ranks
// (ctest's mpi_tests_np*), the /caption_emb it writes equals the encoder's embeddings
// of all captions computed on one rank, row by row, and the side file records the
// encoder; `cluster` carries the record on to the assignment.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "cli/commands.h"
#include "encoder/bert_encoder.h"
#include "io/dataset_reader.h"
#include "io/hdf5_file.h"
#include "mode/encoder_routing.h"
#include "mode/experts.h"
#include "mpi/communicator.h"
#include "tests/common/tiny_bert.h"
#include "tests/mpi/train_fixture.h"

namespace curaclip {
namespace {

namespace fs = std::filesystem;

int run(const Communicator& world, int (*cmd)(int, char**, const Communicator&), std::vector<std::string> args) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    testing::QuietStdout quiet;
    return cmd(int(args.size()), argv.data(), world);
}

TEST(SentenceEncoderEmbed, AnyRankCountWritesTheOneRankEmbeddings) {
    const Communicator world = Communicator::world();
    const testing::TrainFixture f = testing::make_train_fixture(world, "encoder_embed", [](const std::string& dir) {
        testing::TinyBert m;
        m.write(dir + "/bert", R"({"pooling_mode_mean_tokens": true})");
    });
    const std::string data = f.dir + "/train.h5", out = f.dir + "/emb.h5", assign = f.dir + "/assign.h5";
    ASSERT_EQ(run(world, cmd_embed, {"embed", "--encoder", f.dir + "/bert", "--data", data, "--out", out, "--batch", "5"}),
              0);
    // One rank, all captions, another batch size: the reference.
    auto be = make_backend("cpu");
    encoder::BertEncoder enc(*be, f.dir + "/bert", 16);
    const io::DatasetReader reader(data);
    const std::vector<float> want = enc.embed(reader.read_captions(0, reader.size()));
    const H5File h(out, H5File::Mode::read);
    std::vector<int64_t> shape;
    const std::vector<float> got = h.read_f32("/caption_emb", &shape);
    ASSERT_EQ(shape, (std::vector<int64_t>{testing::kFixtureRows, 8}));
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, double(std::fabs(got[i] - want[i])));
    // Rows are independent of their batch up to float rounding of the GEMM shapes.
    EXPECT_LE(worst, 1e-6) << "on " << world.size() << " ranks";
    if (world.rank() == 0) std::fprintf(stderr, "[ embed --encoder ] %d rank(s): max |difference| to one rank %.3g\n", world.size(), worst);
    const std::string rec_id = h.attr_string("/", "encoder_id"), rec_dir = h.attr_string("/", "encoder");
    EXPECT_EQ(rec_id, enc.id());
    EXPECT_EQ(rec_dir, fs::absolute(f.dir + "/bert").string());
    EXPECT_FALSE(h.has_attr("/", "checkpoint"));

    // The assignment carries the encoder; routing checks it and the task embeddings agree across ranks.
    ASSERT_EQ(run(world, cmd_cluster, {"cluster", "--embeddings", out, "--out", assign, "--fine", "8", "--experts", "2",
                                       "--balanced", "true", "--coarse-balanced", "true", "--verbose", "0"}),
              0);
    const mode::Assignment a = mode::read_assignment(assign, true, "assign");
    EXPECT_EQ(a.encoder_id, enc.id());
    EXPECT_NO_THROW(mode::check_routing_encoder(a, enc));
    const std::vector<float> caps = mode::encoder_caption_embeddings(enc, data, world);
    ASSERT_EQ(caps.size(), want.size());
    for (size_t i = 0; i < caps.size(); ++i) ASSERT_NEAR(caps[i], want[i], 1e-6) << "element " << i;
    {
        const H5File af(assign, H5File::Mode::read);
        EXPECT_EQ(af.attr_i64("/", "balanced"), 1);
        EXPECT_EQ(af.attr_i64("/", "coarse_balanced"), 1);
    }
    // Another encoder (other weights) is refused by routing.
    if (world.rank() == 0) {
        testing::TinyBert other;
        other.L = 1;
        other.write(f.dir + "/other", "");
    }
    world.barrier();
    encoder::BertEncoder wrong(*be, f.dir + "/other", 16);
    try {
        mode::check_routing_encoder(a, wrong);
        ADD_FAILURE() << "a different encoder was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("routing encoder mismatch"), std::string::npos) << e.what();
    }
    world.barrier();
    if (world.rank() == 0) fs::remove_all(f.dir);
}

}  // namespace
}  // namespace curaclip
