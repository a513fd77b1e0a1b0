// The trainer under MPI against silently wrong runs (issue 11): the JEST super-batch
// is the same on 1 and 2 ranks (and refused where the ranks do not divide it), a run
// whose steps are all non-finite stops with an error naming the last good
// checkpoint and keeps it, a resume refuses options that change the run and reports
// the ones it may change, a SigLIP model starts from a CLIP checkpoint, a checkpoint
// with logit_scale 100 trains, and unusable outputs or evaluation sets are refused
// before step 1 on every rank alike.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "interop/weights_file.h"
#include "model/checkpoint.h"
#include "io/hdf5_file.h"
#include "model/clip_model.h"
#include "mpi/communicator.h"
#include "train/trainer.h"
#include "train_fixture.h"
#include "tests/common/test_files.h"

namespace fs = std::filesystem;

namespace curaclip {
namespace {

using Fixture = testing::TrainFixture;
using Quiet = testing::QuietStdout;

TrainOptions options(const Fixture& f, const std::string& out, int64_t steps = 4) {
    return testing::fixture_train_options(f, out, steps, 0);
}

using testing::error_of;

std::vector<nlohmann::json> metrics_rows(const std::string& run) {
    std::vector<nlohmann::json> rows;
    std::ifstream in(run + "/metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) rows.push_back(nlohmann::json::parse(line));  // throws on nan / inf
    return rows;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream os;
    os << in.rdbuf();
    return os.str();
}

// Every file of a folder with its bytes, to show that nothing changed.
std::vector<std::pair<std::string, std::string>> snapshot(const std::string& dir) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& e : fs::directory_iterator(dir)) out.emplace_back(e.path().filename().string(), read_file(e.path()));
    std::sort(out.begin(), out.end());
    return out;
}

// Writes a checkpoint of the fixture's model (cfg) into dir/name: the parameters of
// `from` (or the initial weights) with `edit` applied on the host. Rank 0 only.
void write_edited_checkpoint(const ModelConfig& cfg, const std::string& from, const std::string& dir,
                             const std::string& name, int64_t step,
                             const std::function<void(const std::string&, std::vector<double>&)>& edit) {
    auto be = make_backend("cpu");
    ClipModel model(*be, cfg, 1);
    model.init_weights(1);
    if (!from.empty()) load_weights(from, model.params(), /*with_optimizer=*/false);
    for (size_t i = 0; i < model.params().size(); ++i) {
        std::vector<double> v = model.params().values_to_host(i);
        edit(model.params()[i].name, v);
        be->upload(model.params()[i].value, v.data());
    }
    fs::create_directories(dir);
    save_checkpoint(dir, name, model.params(), CheckpointState{step, 0, step, 5, "", model_config_to_ini(cfg), "", -1, ""});
}

TEST(TrainRobustness, JestSuperBatchIsTheSameOnOneAndTwoRanksAndRefusedWhereRanksDoNotDivideIt) {
    const Communicator world = Communicator::world();
    omp_set_num_threads(1);
    const Fixture f = testing::make_train_fixture(world, "robust_jest");
    std::vector<int> groups;
    for (int g : {1, 2, 4})
        if (world.size() % g == 0) groups.push_back(g);
    for (int g : groups) {
        const Communicator group = world.split(world.rank() / g, world.rank());
        TrainOptions o = options(f, f.dir + "/jest_g" + std::to_string(g) + "_c" + std::to_string(world.rank() / g), 3);
        o.jest_enabled = true;
        o.jest.score = jest::ScoreKind::hard_learner;
        o.global_batch = 12;     // b
        o.jest.filter_ratio = 0.6;  // B = round(12 / 0.4) = 30: 15 per rank on 2, not divisible by 4
        o.jest.chunks = 2;
        std::vector<int64_t> rows_per_step;
        o.on_batch_rows = [&](int64_t, const std::vector<int64_t>& rows) { rows_per_step.push_back(int64_t(rows.size())); };
        if (g == 4) {
            const std::string e = error_of([&] { run_training(o, f.cfg, group); });
            EXPECT_NE(e.find("super-batch B = 30"), std::string::npos) << e;
            EXPECT_NE(e.find("not divisible by the 4 ranks"), std::string::npos) << e;
            EXPECT_FALSE(fs::exists(o.out_dir + "/config.ini"));
            continue;
        }
        {
            Quiet q;
            EXPECT_EQ(run_training(o, f.cfg, group), 0);
        }
        ASSERT_EQ(rows_per_step.size(), 3u);
        for (int64_t n : rows_per_step) EXPECT_EQ(n * g, 30) << g << " ranks";  // was 30 / 32 before
    }
    world.barrier();
    if (world.rank() == 0 && groups.size() >= 2) {
        const std::vector<nlohmann::json> a = metrics_rows(f.dir + "/jest_g1_c0"), b = metrics_rows(f.dir + "/jest_g2_c0");
        ASSERT_EQ(a.size(), 3u);
        ASSERT_EQ(b.size(), 3u);
        for (size_t s = 0; s < a.size(); ++s) {
            const double x = a[s]["loss"], y = b[s]["loss"];
            EXPECT_LE(std::abs(x - y), 1e-5 * std::abs(x)) << "step " << s + 1;
        }
    }
    world.barrier();
    if (world.rank() == 0) fs::remove_all(f.dir);
    world.barrier();
}

TEST(TrainRobustness, MultiResolutionRowsThatRoundDifferentlyPerRankAreRefused) {
    const Communicator world = Communicator::world();
    if (world.size() % 2 != 0) GTEST_SKIP() << "needs an even number of ranks";
    const Fixture f = testing::make_train_fixture(world, "robust_flexi");
    const Communicator pair = world.split(world.rank() / 2, world.rank());
    ModelConfig flexi = f.cfg;
    flexi.flexi_patch = 2;
    flexi.flexi_fraction = 0.4;  // of 8: round(3.2) = 3 rows on one rank; of 4 per rank: round(1.6) = 2, 4 in all
    TrainOptions o = options(f, f.dir + "/flexi_c" + std::to_string(world.rank() / 2), 2);
    EXPECT_EQ(error_of([&] { run_training(o, flexi, pair); }),
              "model.flexi_fraction = 0.4 of the local batch 4 (train.batch_size 8 / 2 ranks) rounds to 2 rows per "
              "rank, 4 in all, but to 3 on one rank: choose train.batch_size or model.flexi_fraction so that "
              "flexi_fraction * batch_size / ranks is a whole number");
    flexi.flexi_fraction = 0.5;  // 4 of 8 = 2 + 2
    {
        Quiet q;
        EXPECT_EQ(run_training(o, flexi, pair), 0);
    }
    world.barrier();
    if (world.rank() == 0) fs::remove_all(f.dir);
    world.barrier();
}

TEST(TrainRobustness, NonFiniteStepsStopTheRunAndKeepTheLastGoodCheckpoint) {
    const Communicator world = Communicator::world();
    omp_set_num_threads(1);
    const Fixture f = testing::make_train_fixture(world, "robust_stall");
    const std::string run = f.dir + "/run";
    // A run at step 2 whose weights overflow every forward (finite, so the loader takes
    // them: 3e38 in the patch embedding makes every activation inf, then NaN).
    if (world.rank() == 0)
        write_edited_checkpoint(f.cfg, "", run, checkpoint_name(2), 2, [](const std::string& name, std::vector<double>& v) {
            if (name == "visual.conv1.weight") std::fill(v.begin(), v.end(), 3e38);
        });
    world.barrier();
    const auto before = snapshot(run);
    TrainOptions o = options(f, run, 20);
    o.resume = "latest";
    o.max_skipped_steps = 3;
    o.checkpoint_every = 1;
    std::string e;
    {
        Quiet q;
        e = error_of([&] { run_training(o, f.cfg, world); });
    }
    const std::string ckpt = run + "/" + checkpoint_name(2);
    EXPECT_EQ(e, "train: 3 steps in a row (3..5) had a non-finite loss or gradient norm and changed nothing "
                 "(train.max_skipped_steps = 3); stopped without writing a checkpoint. The last good checkpoint: " +
                     ckpt +
                     ". Look for the cause in the inputs and options (a too large train.lr, bad model.image_mean / "
                     "image_std, a damaged init_from or data file); train.max_skipped_steps 0 never stops");
    world.barrier();
    if (world.rank() == 0) {
        // The checkpoint and `latest` as they were; no checkpoint of the stalled steps.
        auto after = snapshot(run);
        std::vector<std::pair<std::string, std::string>> kept;
        for (auto& [name, bytes] : after)
            if (name != "metrics.jsonl" && name.rfind("config_resume", 0) != 0) kept.emplace_back(name, bytes);
        EXPECT_EQ(kept, before);
        // metrics.jsonl is JSON: the NaN losses are null.
        const std::vector<nlohmann::json> rows = metrics_rows(run);
        ASSERT_EQ(rows.size(), 3u);
        for (size_t s = 0; s < rows.size(); ++s) {
            EXPECT_EQ(rows[s]["step"], int64_t(s) + 3);
            EXPECT_TRUE(rows[s]["loss"].is_null()) << rows[s].dump();
            EXPECT_EQ(rows[s]["skipped"], int64_t(s) + 1);
        }
        fs::remove_all(f.dir);
    }
    world.barrier();
}

TEST(TrainRobustness, ResumeRefusesChangesToTheRunAndReportsMoreSteps) {
    const Communicator world = Communicator::world();
    omp_set_num_threads(1);
    const Fixture f = testing::make_train_fixture(world, "robust_resume");
    const std::string run = f.dir + "/run";
    auto record = [](int64_t batch, int64_t steps) {
        return "[train]\nbatch_size = " + std::to_string(batch) + "\nlr = 0.002\nseed = 5\nsteps = " +
               std::to_string(steps) + "\nwarmup = 0\n";
    };
    TrainOptions first = options(f, run, 8);
    first.stop_at = 4;
    first.config_text = record(8, 8);
    {
        Quiet q;
        EXPECT_EQ(run_training(first, f.cfg, world), 0);
    }
    world.barrier();
    const auto before = snapshot(run);
    // Another batch size (it would skip or repeat rows of the epoch) and another activation.
    TrainOptions bigger = options(f, run, 8);
    bigger.resume = "latest";
    bigger.global_batch = 16;
    bigger.config_text = record(16, 8);
    ModelConfig other = f.cfg;
    other.activation = Activation::quick_gelu;
    const std::string e = error_of([&] { run_training(bigger, other, world); });
    EXPECT_NE(e.find("differ from the run's:\n  model.activation: the run has gelu, this command quick_gelu\n"
                     "  train.batch_size: the run has 8, this command 16\n"),
              std::string::npos)
        << e;
    world.barrier();
    EXPECT_EQ(snapshot(run), before);  // nothing written
    world.barrier();
    // More steps: allowed, reported, and config.ini stays the record of the start.
    TrainOptions longer = options(f, run, 10);
    longer.resume = "latest";
    longer.config_text = record(8, 10);
    {
        Quiet q;
        EXPECT_EQ(run_training(longer, f.cfg, world), 0);
    }
    world.barrier();
    if (world.rank() == 0) {
        EXPECT_EQ(read_file(run + "/config.ini"), record(8, 8));
        const std::string rec = read_file(run + "/config_resume_step_4.ini");
        EXPECT_EQ(rec.rfind("# options in effect when resuming " + run + "/" + checkpoint_name(4) + " at step 4\n"
                            "# resume: train.steps 8 -> 10 (the cosine schedule now ends at step 10: lr of step 5 ",
                            0),
                  0u)
            << rec;
        EXPECT_NE(rec.find(record(8, 10)), std::string::npos);
        EXPECT_TRUE(fs::exists(run + "/" + checkpoint_name(10)));
    }
    world.barrier();
    // Resuming the finished run does nothing and says so.
    const auto done = snapshot(run);
    {
        Quiet q;
        EXPECT_EQ(run_training(longer, f.cfg, world), 0);
    }
    world.barrier();
    EXPECT_EQ(snapshot(run), done);
    world.barrier();
    if (world.rank() == 0) fs::remove_all(f.dir);
    world.barrier();
}

TEST(TrainRobustness, SiglipStartsFromAClipCheckpointWithTheRecipesLogitBias) {
    const Communicator world = Communicator::world();
    omp_set_num_threads(1);
    const Fixture f = testing::make_train_fixture(world, "robust_siglip");
    {
        Quiet q;
        EXPECT_EQ(run_training(options(f, f.dir + "/clip", 2), f.cfg, world), 0);
    }
    ModelConfig sig = f.cfg;
    sig.sigmoid_loss = true;
    TrainOptions o = options(f, f.dir + "/siglip", 1);
    o.init_from = f.dir + "/clip";
    o.optim.lr = 0.0;  // the checkpoint after one step holds the initial parameters
    {
        Quiet q;
        EXPECT_EQ(run_training(o, sig, world), 0);
    }
    world.barrier();
    if (world.rank() == 0) {
        const H5File a(f.dir + "/clip/" + checkpoint_name(2), H5File::Mode::read);
        const H5File b(f.dir + "/siglip/" + checkpoint_name(1), H5File::Mode::read);
        EXPECT_EQ(b.read_f32("params/logit_bias"), std::vector<float>{-10.0f});  // SigLIP's b init
        EXPECT_FALSE(a.exists("params/logit_bias"));
        for (const char* name : {"logit_scale", "visual.conv1.weight", "token_embedding.weight", "text_projection"})
            EXPECT_EQ(a.read_f32(std::string("params/") + name), b.read_f32(std::string("params/") + name)) << name;
        fs::remove_all(f.dir);
    }
    world.barrier();
}

// train.init_optimizer: the run starts on init_from's AdamW moments, writes their step
// count into its checkpoints, and a stop and resume gives the uninterrupted run.
TEST(TrainRobustness, InitOptimizerCarriesTheMomentsAndTheirStepCountThroughAResume) {
    const Communicator world = Communicator::world();
    omp_set_num_threads(1);
    const Fixture f = testing::make_train_fixture(world, "robust_init_opt");
    {
        Quiet q;
        EXPECT_EQ(run_training(options(f, f.dir + "/seed", 3), f.cfg, world), 0);
    }
    auto continuation = [&](const std::string& out, bool carry) {
        TrainOptions o = options(f, f.dir + "/" + out, 4);
        o.init_from = f.dir + "/seed";
        o.init_optimizer = carry;
        return o;
    };
    auto train = [&](const TrainOptions& o) {
        Quiet q;
        EXPECT_EQ(run_training(o, f.cfg, world), 0);
    };
    train(continuation("whole", true));
    TrainOptions first = continuation("split", true);
    first.stop_at = 2;
    train(first);
    TrainOptions rest = continuation("split", true);
    rest.resume = "latest";
    train(rest);
    // One step at lr 0 (parameters unchanged, the same batch, the same gradient) with
    // and without the moments: m differs by exactly beta1 * the seed's m.
    for (const bool carry : {true, false}) {
        TrainOptions o = continuation(carry ? "lr0_carried" : "lr0_fresh", carry);
        o.steps = 1;
        o.optim.lr = 0.0;
        o.optim.min_lr = 0.0;
        o.optim.warmup_steps = 0;
        train(o);
    }
    world.barrier();
    if (world.rank() == 0) {
        const H5File whole(f.dir + "/whole/" + checkpoint_name(4), H5File::Mode::read);
        const H5File split(f.dir + "/split/" + checkpoint_name(4), H5File::Mode::read);
        EXPECT_EQ(whole.attr_i64("/", "adam_step_offset"), 3);
        EXPECT_EQ(split.attr_i64("/", "adam_step_offset"), 3);
        for (const char* name : {"params/visual.conv1.weight", "params/logit_scale", "optimizer/adam_m/text_projection",
                                 "optimizer/adam_v/token_embedding.weight"})
            EXPECT_EQ(whole.read_f32(name), split.read_f32(name)) << name;
        const H5File seed(f.dir + "/seed/" + checkpoint_name(3), H5File::Mode::read);
        const H5File carried(f.dir + "/lr0_carried/" + checkpoint_name(1), H5File::Mode::read);
        const H5File fresh(f.dir + "/lr0_fresh/" + checkpoint_name(1), H5File::Mode::read);
        EXPECT_FALSE(fresh.has_attr("/", "adam_step_offset"));  // 0: not written
        const float b1 = float(options(f, "", 1).optim.beta1);
        for (const char* name : {"optimizer/adam_m/text_projection", "optimizer/adam_m/visual.conv1.weight"}) {
            const std::vector<float> m0 = seed.read_f32(name), mc = carried.read_f32(name), mf = fresh.read_f32(name);
            ASSERT_EQ(m0.size(), mc.size());
            float scale = 0;
            for (float x : m0) scale = std::max(scale, std::abs(x));
            ASSERT_GT(scale, 0.0f) << name;
            for (size_t i = 0; i < m0.size(); ++i) ASSERT_NEAR(mc[i] - mf[i], b1 * m0[i], 1e-5f * scale) << name << " " << i;
        }
        fs::remove_all(f.dir);
    }
    world.barrier();
}

TEST(TrainRobustness, ACheckpointWithLogitScale100TrainsWithoutSkippedSteps) {
    const Communicator world = Communicator::world();
    omp_set_num_threads(1);
    const Fixture f = testing::make_train_fixture(world, "robust_scale");
    const std::string src = f.dir + "/scale100";
    if (world.rank() == 0)
        write_edited_checkpoint(f.cfg, "", src, checkpoint_name(1), 1, [](const std::string& name, std::vector<double>& v) {
            if (name == "logit_scale") v[0] = 100.0;  // exp(100) = 2.7e43: inf in fp32
        });
    world.barrier();
    TrainOptions o = options(f, f.dir + "/run", 3);
    o.init_from = src;
    o.max_skipped_steps = 1;
    {
        Quiet q;
        EXPECT_EQ(run_training(o, f.cfg, world), 0);
    }
    world.barrier();
    if (world.rank() == 0) {
        const std::vector<nlohmann::json> rows = metrics_rows(f.dir + "/run");
        ASSERT_EQ(rows.size(), 3u);
        for (const auto& r : rows) {
            EXPECT_EQ(r["skipped"], 0);
            EXPECT_TRUE(r["loss"].is_number()) << r.dump();
        }
        const H5File c(f.dir + "/run/" + checkpoint_name(3), H5File::Mode::read);
        EXPECT_LE(c.read_f32("params/logit_scale")[0], 4.60517025f);  // AdamW's clamp brought it back
        fs::remove_all(f.dir);
    }
    world.barrier();
}

TEST(TrainRobustness, UnwritableOutputAndMissingEvalSetAreRefusedBeforeStepOneOnEveryRank) {
    const Communicator world = Communicator::world();
    const Fixture f = testing::make_train_fixture(world, "robust_early");
    if (world.rank() == 0) std::ofstream(f.dir + "/a_file") << "x";
    world.barrier();
    TrainOptions o = options(f, f.dir + "/a_file/run", 2);
    EXPECT_EQ(error_of([&] { run_training(o, f.cfg, world); }),
              "train.out " + f.dir + "/a_file/run: cannot create the run folder (Not a directory)");
    TrainOptions e = options(f, f.dir + "/run", 2);
    e.eval_path = f.dir + "/no_eval.h5";
    const std::string msg = error_of([&] { run_training(e, f.cfg, world); });
    EXPECT_EQ(msg.rfind("data.eval: ", 0), 0u) << msg;
    EXPECT_NE(msg.find("no_eval.h5"), std::string::npos) << msg;
    world.barrier();
    EXPECT_FALSE(fs::exists(f.dir + "/run"));  // refused before the run folder was made
    world.barrier();
    if (world.rank() == 0) fs::remove_all(f.dir);
    world.barrier();
}

}  // namespace
}  // namespace curaclip
