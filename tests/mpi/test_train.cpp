// End-to-end training under MPI: the same global batch on 1, 2 and 4 ranks
// gives the same losses, and 10 steps + resume + 10 steps equal 20 steps
// straight, bit for bit (parameters and optimizer state) on the CPU backend.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/philox.h"
#include "model/checkpoint.h"
#include "io/dataset_writer.h"
#include "io/hdf5_file.h"
#include "mpi/communicator.h"
#include "tokenizer/bpe_tokenizer.h"
#include "train/trainer.h"
#include "train_fixture.h"

namespace fs = std::filesystem;

namespace curaclip {
namespace {

using Fixture = testing::TrainFixture;
using Quiet = testing::QuietStdout;

Fixture make_fixture(const Communicator& world, const std::string& tag) {
    return testing::make_train_fixture(world, "train_" + tag);
}


TrainOptions options(const Fixture& f, const std::string& out) {
    TrainOptions o;
    o.train_path = f.dir + "/train.h5";
    o.tokenizer_path = f.dir + "/tokenizer.bpe";
    o.out_dir = out;
    o.global_batch = 8;
    o.steps = 20;
    o.seed = 5;
    o.optim.lr = 2e-3;
    o.optim.warmup_steps = 3;
    o.optim.total_steps = 20;
    o.optim.grad_clip_norm = 1.0;
    o.log_every = 1;
    return o;
}

std::vector<double> logged_losses(const std::string& run) {
    std::vector<double> out;
    std::ifstream in(run + "/metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) {
        const auto k = line.find("\"loss\": ");
        if (k != std::string::npos && line.find("\"eval\"") == std::string::npos)
            out.push_back(std::stod(line.substr(k + 8)));
    }
    return out;
}

TEST(Train, SameGlobalBatchOnOneTwoAndFourRanksGivesTheSameLosses) {
    const Communicator world = Communicator::world();
    omp_set_num_threads(1);
    const Fixture f = make_fixture(world, "ranks");
    std::vector<int> groups;
    for (int g : {1, 2, 4})
        if (world.size() % g == 0) groups.push_back(g);
    {
        Quiet q;
        for (int g : groups) {
            // Ranks r with the same r / g train together, one run per group.
            const Communicator group = world.split(world.rank() / g, world.rank());
            const std::string out = f.dir + "/g" + std::to_string(g) + "_c" + std::to_string(world.rank() / g);
            EXPECT_EQ(run_training(options(f, out), f.cfg, group), 0);
        }
    }
    world.barrier();
    if (world.rank() == 0) {
        const std::vector<double> ref = logged_losses(f.dir + "/g1_c0");
        ASSERT_EQ(ref.size(), 20u);
        EXPECT_LT(ref.back(), ref.front());  // it learns
        for (int g : groups) {
            const std::vector<double> got = logged_losses(f.dir + "/g" + std::to_string(g) + "_c0");
            ASSERT_EQ(got.size(), ref.size()) << g << " ranks";
            for (size_t s = 0; s < ref.size(); ++s)
                EXPECT_LE(std::abs(got[s] - ref[s]), 1e-5 * std::abs(ref[s])) << g << " ranks, step " << s + 1;
        }
        std::printf("[train] losses %.6f -> %.6f identical within 1e-5 on 1..%d ranks\n", ref.front(), ref.back(),
                    groups.back());
        fs::remove_all(f.dir);
    }
    world.barrier();
}

TEST(Train, TenStepsResumeAndTenMoreEqualTwentyStraightBitForBit) {
    const Communicator world = Communicator::world();
    omp_set_num_threads(1);
    const Fixture f = make_fixture(world, "resume");
    {
        Quiet q;
        EXPECT_EQ(run_training(options(f, f.dir + "/straight"), f.cfg, world), 0);
        TrainOptions first = options(f, f.dir + "/resumed");
        first.stop_at = 10;
        EXPECT_EQ(run_training(first, f.cfg, world), 0);
        TrainOptions second = options(f, f.dir + "/resumed");
        second.resume = "latest";
        EXPECT_EQ(run_training(second, f.cfg, world), 0);
    }
    world.barrier();
    if (world.rank() == 0) {
        EXPECT_TRUE(fs::exists(f.dir + "/resumed/" + checkpoint_name(10)));
        H5File a(f.dir + "/straight/" + checkpoint_name(20), H5File::Mode::read);
        H5File b(f.dir + "/resumed/" + checkpoint_name(20), H5File::Mode::read);
        int compared = 0;
        for (const char* group : {"params/", "optimizer/adam_m/", "optimizer/adam_v/"})
            for (const char* name : {"visual.conv1.weight", "visual.transformer.resblocks.0.attn.in_proj_weight",
                                     "token_embedding.weight", "text_projection", "logit_scale"}) {
                const std::vector<float> x = a.read_f32(std::string(group) + name), y = b.read_f32(std::string(group) + name);
                ASSERT_EQ(x.size(), y.size());
                for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], y[i]) << group << name << "[" << i << "]";
                ++compared;
            }
        EXPECT_EQ(compared, 15);
        const std::vector<double> la = logged_losses(f.dir + "/straight"), lb = logged_losses(f.dir + "/resumed");
        ASSERT_EQ(la.size(), lb.size());
        for (size_t s = 0; s < la.size(); ++s) EXPECT_EQ(la[s], lb[s]) << "step " << s + 1;
        fs::remove_all(f.dir);
    }
    world.barrier();
}

TEST(Train, JestTrainingIsTheSameOnOneTwoAndFourRanksInBothModes) {
    const Communicator world = Communicator::world();
    omp_set_num_threads(1);
    const Fixture f = make_fixture(world, "jest");
    // A reference model: a few steps of ordinary training, on one rank.
    const Communicator self = world.split(world.rank(), 0);
    const std::string ref_dir = f.dir + "/reference_r" + std::to_string(world.rank());
    std::vector<int> groups;
    for (int g : {1, 2, 4})
        if (world.size() % g == 0) groups.push_back(g);
    {
        Quiet q;
        TrainOptions r = options(f, ref_dir);
        r.steps = 5;
        r.optim.total_steps = 5;
        EXPECT_EQ(run_training(r, f.cfg, self), 0);
        for (int g : groups)
            for (const char* mode : {"gathered", "sharded"}) {
                const Communicator group = world.split(world.rank() / g, world.rank());
                TrainOptions o = options(f, f.dir + "/jest_" + mode + "_g" + std::to_string(g) + "_c" +
                                                std::to_string(world.rank() / g));
                o.steps = 8;
                o.optim.total_steps = 8;
                o.jest_enabled = true;
                o.jest.filter_ratio = 0.5;  // B = 16 -> b = 8
                o.jest.chunks = 2;
                o.jest.mode = jest::parse_select_mode(mode);
                // every rank of a group must name the same reference file: the group's first rank's
                o.jest_reference = f.dir + "/reference_r" + std::to_string(world.rank() / g * g) + "/" + checkpoint_name(5);
                EXPECT_EQ(run_training(o, f.cfg, group), 0);
            }
    }
    world.barrier();
    if (world.rank() == 0) {
        const std::vector<double> ref = logged_losses(f.dir + "/jest_gathered_g1_c0");
        ASSERT_EQ(ref.size(), 8u);
        for (int g : groups)
            for (const char* mode : {"gathered", "sharded"}) {
                const std::vector<double> got = logged_losses(f.dir + "/jest_" + mode + "_g" + std::to_string(g) + "_c0");
                ASSERT_EQ(got.size(), ref.size()) << mode << " " << g;
                for (size_t s = 0; s < ref.size(); ++s)
                    EXPECT_LE(std::abs(got[s] - ref[s]), 1e-5 * std::abs(ref[s])) << mode << ", " << g << " ranks, step " << s + 1;
            }
        fs::remove_all(f.dir);
    }
    world.barrier();
}

TEST(Train, RefusesARunFolderThatHoldsARun) {
    const Communicator world = Communicator::world();
    const Fixture f = make_fixture(world, "refuse");
    TrainOptions o = options(f, f.dir + "/run");
    o.steps = 2;
    o.optim.total_steps = 2;
    o.optim.warmup_steps = 0;
    {
        Quiet q;
        EXPECT_EQ(run_training(o, f.cfg, world), 0);
    }
    const std::string ckpt = f.dir + "/run/" + checkpoint_name(2);
    const auto before = fs::last_write_time(ckpt);
    try {
        run_training(o, f.cfg, world);
        ADD_FAILURE() << "a second run into the same folder must be refused";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("already holds a run"), std::string::npos) << e.what();
    }
    EXPECT_EQ(fs::last_write_time(ckpt), before);  // nothing overwritten
    world.barrier();
    if (world.rank() == 0) fs::remove_all(f.dir);
    world.barrier();
}

}  // namespace
}  // namespace curaclip
