// MoDE experts under MPI: an expert's loader visits only its cluster plus the
// out-of-cluster share (the same global batches on any number of ranks);
// train-experts gives the same expert checkpoints as training each expert on its
// own; bad side files and expert ids are refused with clear messages.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "core/philox.h"
#include "model/checkpoint.h"
#include "io/dataset_writer.h"
#include "io/hdf5_file.h"
#include "io/loader.h"
#include "mode/experts.h"
#include "train/train_experts.h"
#include "mpi/communicator.h"
#include "tokenizer/bpe_tokenizer.h"
#include "train/trainer.h"
#include "train_fixture.h"

namespace fs = std::filesystem;

namespace curaclip {
namespace {

using Fixture = testing::TrainFixture;
using Quiet = testing::QuietStdout;
constexpr int64_t kN = testing::kFixtureRows;

// Expert of row i: (i % 4) % 2, i.e. classes {shoe, coat} -> 0, {bag, shirt} -> 1.
void write_assignment(const std::string& path, int64_t n) {
    std::vector<int32_t> fine(static_cast<size_t>(n)), expert(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        fine[size_t(i)] = int32_t(i % 4);
        expert[size_t(i)] = int32_t((i % 4) % 2);
    }
    std::vector<float> centers(4 * 16);
    Philox rng(3, RngPurpose::test);
    for (float& x : centers) x = float(rng.uniform());
    const int32_t f2e[4] = {0, 1, 0, 1};
    H5File f(path, H5File::Mode::create_exclusive);
    f.write_i32("/assign/fine", fine.data(), {n});
    f.write_i32("/assign/expert", expert.data(), {n});
    f.write_f32("/centers/fine", centers.data(), {4, 16});
    f.write_f32("/centers/coarse", centers.data(), {2, 16});
    f.write_i32("/centers/fine_to_expert", f2e, {4});
    f.set_attr("/", "n", int64_t(2));
    f.set_attr("/", "m", int64_t(4));
    f.set_attr("/", "kind", std::string("mode_clusters"));
}

Fixture make_fixture(const Communicator& world, const std::string& tag) {
    return testing::make_train_fixture(world, "mode_" + tag, [](const std::string& dir) {
        write_assignment(dir + "/assign.h5", kN);
        write_assignment(dir + "/assign_other.h5", kN - 14);  // another dataset's
    });
}

TrainOptions options(const Fixture& f, const std::string& out, int64_t steps) {
    return testing::fixture_train_options(f, out, steps, 2);
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

TEST(ModeExperts, AnExpertTrainsOnlyOnItsClusterPlusTheOutOfClusterShare) {
    const Communicator world = Communicator::world();
    omp_set_num_threads(1);
    const Fixture f = make_fixture(world, "rows");
    // Expert 1 owns the 32 rows of classes bag and shirt; ood_share 0.1 adds round(3.2) = 3 others.
    TrainOptions o = options(f, f.dir + "/expert1", 10);
    o.mode_assign = f.dir + "/assign.h5";
    o.mode_expert = 1;
    o.mode_ood_share = 0.1;
    const std::vector<int64_t> allowed = training_rows(o, kN);
    ASSERT_EQ(allowed.size(), 35u);
    int64_t outside = 0;
    for (int64_t r : allowed) outside += (r % 4) % 2 != 1;
    EXPECT_EQ(outside, 3);
    const std::set<int64_t> allowed_set(allowed.begin(), allowed.end());
    std::vector<int64_t> seen;
    o.on_batch_rows = [&](int64_t, const std::vector<int64_t>& rows) { seen.insert(seen.end(), rows.begin(), rows.end()); };
    {
        Quiet q;
        EXPECT_EQ(run_training(o, f.cfg, world), 0);
    }
    ASSERT_EQ(seen.size(), size_t(10 * 8 / world.size()));
    for (int64_t r : seen) EXPECT_TRUE(allowed_set.count(r)) << "row " << r << " is not expert 1's";

    // The loader over the subset: each epoch is a permutation of it, and every
    // rank's slice is its part of the same global batch on any number of ranks.
    io::LoaderOptions lo;
    lo.rows = allowed;
    lo.prefetch = 0;
    io::Loader loader(f.dir + "/train.h5", 8, world, 5, lo);
    EXPECT_EQ(loader.steps_per_epoch(), 4);
    std::vector<int64_t> epoch = loader.epoch_rows(0);
    std::sort(epoch.begin(), epoch.end());
    EXPECT_EQ(epoch, allowed);
    // Global batches are a function of (subset, seed, epoch) only: check against a 1-rank recomputation.
    const std::vector<int64_t> order = io::Loader::epoch_order(35, 5, 0);
    for (int s = 0; s < 4; ++s) {
        const io::Batch b = loader.next();
        for (int64_t i = 0; i < b.size; ++i)
            EXPECT_EQ(b.indices[size_t(i)], allowed[size_t(order[size_t(s * 8 + b.offset + i)])]) << "step " << s;
    }
    world.barrier();
    if (world.rank() == 0) fs::remove_all(f.dir);
    world.barrier();
}

TEST(ModeExperts, TrainExpertsGivesTheSameCheckpointsAsTrainingEachExpertAlone) {
    const Communicator world = Communicator::world();
    omp_set_num_threads(1);
    const Fixture f = make_fixture(world, "experts");
    TrainOptions seed = options(f, f.dir + "/seed", 4);
    TrainOptions base = options(f, f.dir + "/mode2", 6);
    base.init_from = f.dir + "/seed";
    base.mode_assign = f.dir + "/assign.h5";
    base.config_text = "[mode]\nexpert = -1\n[train]\nout = " + base.out_dir + "\n";
    const mode::NodeGroupPlan plan = mode::plan_node_groups(mode::node_of_each_rank(world), 2);
    {
        Quiet q;
        EXPECT_EQ(run_training(seed, f.cfg, world), 0);
        EXPECT_EQ(mode::train_experts(base, f.cfg, world), 0);
        // Each expert on its own, one after the other, on the ranks its group had.
        for (int c = 0; c < 2; ++c) {
            const int g = c % plan.groups;
            const bool member = plan.group_of_rank[size_t(world.rank())] == g;
            const Communicator comm = world.split(member ? 0 : MPI_UNDEFINED, world.rank());
            if (member) {
                TrainOptions o = base;
                o.mode_expert = c;
                o.out_dir = f.dir + "/alone_" + std::to_string(c);
                EXPECT_EQ(run_training(o, f.cfg, comm), 0);
            }
            world.barrier();
        }
    }
    if (world.rank() == 0) {
        int compared = 0;
        for (int c = 0; c < 2; ++c) {
            H5File a(mode::expert_dir(base.out_dir, c) + "/" + checkpoint_name(6), H5File::Mode::read);
            H5File b(f.dir + "/alone_" + std::to_string(c) + "/" + checkpoint_name(6), H5File::Mode::read);
            H5File s(f.dir + "/seed/" + checkpoint_name(4), H5File::Mode::read);
            for (const char* name : {"visual.conv1.weight", "visual.transformer.resblocks.0.attn.in_proj_weight",
                                     "token_embedding.weight", "text_projection", "logit_scale"}) {
                const std::string key = std::string("params/") + name;
                const std::vector<float> x = a.read_f32(key), y = b.read_f32(key), z = s.read_f32(key);
                ASSERT_EQ(x.size(), y.size());
                for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], y[i]) << "expert " << c << " " << name << "[" << i << "]";
                EXPECT_NE(x, z) << "expert " << c << " did not train away from the seed";
                ++compared;
            }
            EXPECT_EQ(a.attr_i64("/", "step"), 6);
            // The run records which expert it is.
            EXPECT_NE(a.attr_string("/", "config").find("expert = " + std::to_string(c)), std::string::npos);
        }
        EXPECT_EQ(compared, 10);
        // The two experts differ (different data).
        H5File e0(mode::expert_dir(base.out_dir, 0) + "/" + checkpoint_name(6), H5File::Mode::read);
        H5File e1(mode::expert_dir(base.out_dir, 1) + "/" + checkpoint_name(6), H5File::Mode::read);
        EXPECT_NE(e0.read_f32("params/text_projection"), e1.read_f32("params/text_projection"));
        std::printf("[mode] %d rank(s): %d group(s), train-experts == each expert alone, bit for bit\n", world.size(),
                    plan.groups);
        fs::remove_all(f.dir);
    }
    world.barrier();
}

// A train-experts job stopped part way (train.stop_at here; a preemption alike) and
// resumed ends with the same experts as one uninterrupted job; an expert counts as
// done by the trainer's `finished` marker, so one stopped at its last step (no
// marker: its final evaluation may be missing) is resumed, and finished ones are
// skipped untouched.
TEST(ModeExperts, TrainExpertsResumesAStoppedJobToTheSameExperts) {
    const Communicator world = Communicator::world();
    omp_set_num_threads(1);
    const Fixture f = make_fixture(world, "experts_resume");
    TrainOptions seed = options(f, f.dir + "/seed", 4);
    auto base_for = [&](const std::string& out) {
        TrainOptions b = options(f, out, 6);
        b.init_from = f.dir + "/seed";
        b.mode_assign = f.dir + "/assign.h5";
        b.config_text = "[mode]\nexpert = -1\n[train]\nout = " + b.out_dir + "\n";
        return b;
    };
    const TrainOptions whole = base_for(f.dir + "/whole");
    TrainOptions part = base_for(f.dir + "/part");
    {
        Quiet q;
        EXPECT_EQ(run_training(seed, f.cfg, world), 0);
        EXPECT_EQ(mode::train_experts(whole, f.cfg, world), 0);
        part.stop_at = 3;
        EXPECT_EQ(mode::train_experts(part, f.cfg, world), 0);
    }
    world.barrier();
    EXPECT_FALSE(fs::exists(mode::expert_dir(part.out_dir, 0) + "/finished"));
    EXPECT_TRUE(fs::exists(mode::expert_dir(part.out_dir, 0) + "/" + checkpoint_name(3)));
    part.stop_at = 0;
    part.resume = "latest";
    {
        Quiet q;
        EXPECT_EQ(mode::train_experts(part, f.cfg, world), 0);
    }
    world.barrier();
    for (int c = 0; c < 2; ++c) {
        const std::string dir = mode::expert_dir(part.out_dir, c);
        EXPECT_TRUE(fs::exists(dir + "/finished")) << dir;
        if (world.rank() == 0) {
            H5File a(dir + "/" + checkpoint_name(6), H5File::Mode::read);
            H5File b(mode::expert_dir(whole.out_dir, c) + "/" + checkpoint_name(6), H5File::Mode::read);
            for (const char* name : {"visual.conv1.weight", "token_embedding.weight", "text_projection"}) {
                const std::string key = std::string("params/") + name;
                EXPECT_EQ(a.read_f32(key), b.read_f32(key)) << "expert " << c << " " << name;
            }
        }
    }
    // Expert 0 stopped at its last step (its marker gone): resumed, not skipped; expert 1
    // finished: skipped, its files untouched.
    world.barrier();
    const std::string e1_final = mode::expert_dir(part.out_dir, 1) + "/" + checkpoint_name(6);
    const auto e1_time = fs::last_write_time(e1_final);
    if (world.rank() == 0) fs::remove(mode::expert_dir(part.out_dir, 0) + "/finished");
    world.barrier();
    std::string out;
    {
        testing::CaptureStdout cap;
        EXPECT_EQ(mode::train_experts(part, f.cfg, world), 0);
        out = cap.text();
    }
    world.barrier();
    EXPECT_TRUE(fs::exists(mode::expert_dir(part.out_dir, 0) + "/finished"));
    EXPECT_EQ(fs::last_write_time(e1_final), e1_time);
    // (each expert's messages come from its group's first rank)
    int64_t said[2] = {out.find("expert 0: already trained") != std::string::npos ? 1 : 0,
                       out.find("expert 1: already trained") != std::string::npos ? 1 : 0};
    world.allreduce_max(said, 2);
    EXPECT_EQ(said[0], 0) << "expert 0 (stopped at its last step) was skipped";
    EXPECT_EQ(said[1], 1) << "expert 1 (finished) was not skipped";
    world.barrier();
    if (world.rank() == 0) fs::remove_all(f.dir);
    world.barrier();
}

TEST(ModeExperts, BadExpertIdsAndSideFilesAreRefused) {
    const Communicator world = Communicator::world();
    const Fixture f = make_fixture(world, "bad");
    TrainOptions o = options(f, f.dir + "/bad_id", 2);
    o.mode_assign = f.dir + "/assign.h5";
    o.mode_expert = 2;
    std::string e = error_of([&] { run_training(o, f.cfg, world); });
    EXPECT_NE(e.find("mode.expert = 2 but"), std::string::npos) << e;
    EXPECT_NE(e.find("has 2 experts"), std::string::npos) << e;

    o = options(f, f.dir + "/missing", 2);
    o.mode_assign = f.dir + "/no_such_assign.h5";
    o.mode_expert = 0;
    e = error_of([&] { run_training(o, f.cfg, world); });
    EXPECT_NE(e.find("no_such_assign.h5 does not exist"), std::string::npos) << e;

    o = options(f, f.dir + "/other", 2);
    o.mode_assign = f.dir + "/assign_other.h5";
    o.mode_expert = 0;
    e = error_of([&] { run_training(o, f.cfg, world); });
    EXPECT_NE(e.find("assigns 50 examples but data.train"), std::string::npos) << e;
    EXPECT_NE(e.find("another dataset"), std::string::npos) << e;

    TrainOptions t = options(f, f.dir + "/experts", 2);
    t.mode_assign = f.dir + "/assign.h5";
    e = error_of([&] { mode::train_experts(t, f.cfg, world); });
    EXPECT_NE(e.find("train.init_from is required"), std::string::npos) << e;
    t.init_from = f.dir + "/nowhere";
    t.mode_assign = f.dir + "/assign_other.h5";
    e = error_of([&] { mode::train_experts(t, f.cfg, world); });
    EXPECT_NE(e.find("another dataset"), std::string::npos) << e;
    world.barrier();
    if (world.rank() == 0) fs::remove_all(f.dir);
    world.barrier();
}

}  // namespace
}  // namespace curaclip
