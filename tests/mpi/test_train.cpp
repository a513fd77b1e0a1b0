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
#include "io/checkpoint.h"
#include "io/dataset_writer.h"
#include "io/hdf5_file.h"
#include "mpi/communicator.h"
#include "tokenizer/bpe_tokenizer.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace curaclip {
namespace {

const char* kWords[] = {"dark", "bright", "small", "large", "plain", "striped"};
const char* kClasses[] = {"shoe", "bag", "coat", "shirt"};

// A shared scratch folder named by rank 0, with a tokenizer and a small dataset.
struct Fixture {
    std::string dir;
    ModelConfig cfg;
};

Fixture make_fixture(const Communicator& world, const std::string& tag) {
    int64_t nonce = 0;
    if (world.rank() == 0) nonce = int64_t(::getpid());
    world.broadcast(&nonce, 1, 0);
    Fixture f;
    f.dir = (fs::temp_directory_path() / ("curaclip_train_" + tag + "_" + std::to_string(nonce))).string();
    f.cfg.image_size = 8;
    f.cfg.patch_size = 4;
    f.cfg.channels = 1;
    f.cfg.image_mean = {0.5f};
    f.cfg.image_std = {0.25f};
    f.cfg.vision = {16, 1, 2, 2};
    f.cfg.text = {16, 1, 2, 2};
    f.cfg.context_length = 8;
    f.cfg.embed_dim = 16;
    if (world.rank() == 0) {
        fs::remove_all(f.dir);
        fs::create_directories(f.dir);
        const int64_t N = 64;
        io::DatasetContents d;
        d.count = N;
        d.image_size = 8;
        d.channels = 1;
        d.context_length = 8;
        Philox rng(11, RngPurpose::test);
        for (int64_t i = 0; i < N; ++i) {
            const int cls = int(i % 4);
            d.captions.push_back(std::string("a ") + kWords[rng.below(6)] + " " + kClasses[cls]);
            d.labels.push_back(cls);
            for (int p = 0; p < 64; ++p) d.images.push_back(uint8_t((cls * 60 + rng.below(64)) & 255));
        }
        const BpeTokenizer tok = BpeTokenizer::train(d.captions, 540);
        tok.save(f.dir + "/tokenizer.bpe");
        d.tokens = tok.encode_batch(d.captions, 8);
        d.classnames = {"shoe", "bag", "coat", "shirt"};
        io::DatasetAttributes a;
        a.tokenizer_id = tok.id_hex();
        a.source = "synthetic test data";
        io::write_dataset(f.dir + "/train.h5", d, a);
    }
    world.barrier();
    f.cfg.vocab_size = BpeTokenizer::load(f.dir + "/tokenizer.bpe").vocab_size();
    return f;
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

class Quiet {  // the trainer's progress lines would interleave across ranks
public:
    Quiet() { std::fflush(stdout); saved_ = dup(1); FILE* n = std::fopen("/dev/null", "w"); dup2(fileno(n), 1); std::fclose(n); }
    ~Quiet() { std::fflush(stdout); dup2(saved_, 1); close(saved_); }
private:
    int saved_;
};

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
