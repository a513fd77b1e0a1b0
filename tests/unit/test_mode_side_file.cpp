// MoDE side files read back (src/mode/experts.h read_assignment, side_file.h
// EmbeddingReader): what `curaclip cluster` writes is accepted, and every other
// input a routing or an expert would silently misuse is refused naming the file,
// the dataset and the row: non-finite centers (which route every class to expert
// 0), experts out of range, attributes that disagree with the datasets, shapes
// that claim more than the file holds (no std::bad_alloc), non-finite embeddings.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <mutex>

#include "io/hdf5_file.h"
#include "mode/experts.h"
#include "mpi/communicator.h"
#include "mode/routing.h"
#include "mode/side_file.h"
#include "tests/common/test_files.h"

namespace curaclip::mode {
namespace {

using testing::expect_error;
using testing::TempDir;

// A side file as `curaclip cluster` writes it: 4 fine centers in 3 dimensions,
// 2 experts, 6 examples.
struct SideFile {
    std::vector<float> fine = {1, 0, 0,  0, 1, 0,  0, 0, 1,  0.6f, 0.8f, 0};
    std::vector<int32_t> fine_to_expert = {0, 1, 1, 0};
    std::vector<float> coarse = {0.8f, 0.4f, 0, 0, 0.5f, 0.5f};
    std::vector<int32_t> assign_fine = {0, 1, 2, 3, 3, 1};
    std::vector<int32_t> assign_expert = {0, 1, 1, 0, 0, 1};
    int64_t n = 2, m = 4, dim = 3, n_examples = 6;

    void write(const std::string& path) const {
        H5File f(path, H5File::Mode::create_exclusive);
        f.write_f32("/centers/fine", fine.data(), {int64_t(fine.size()) / 3, 3});
        f.write_i32("/centers/fine_to_expert", fine_to_expert.data(), {int64_t(fine_to_expert.size())});
        f.write_f32("/centers/coarse", coarse.data(), {2, 3});
        f.write_i32("/assign/fine", assign_fine.data(), {int64_t(assign_fine.size())});
        f.write_i32("/assign/expert", assign_expert.data(), {int64_t(assign_expert.size())});
        f.set_attr("/", "kind", std::string("mode_clusters"));
        f.set_attr("/", "n", n);
        f.set_attr("/", "m", m);
        f.set_attr("/", "dim", dim);
        f.set_attr("/", "n_examples", n_examples);
        f.set_attr("/", "checkpoint", std::string("runs/seed/step_1.h5"));
    }
};

TEST(ModeSideFile, AClusterFileReadsBack) {
    TempDir d;
    SideFile s;
    s.write(d / "a.h5");
    const Assignment a = read_assignment(d / "a.h5", true, "--assign");
    EXPECT_EQ(a.m, 4);
    EXPECT_EQ(a.dim, 3);
    EXPECT_EQ(a.n_experts, 2);
    EXPECT_EQ(a.n_examples, 6);
    EXPECT_EQ(a.expert, s.assign_expert);
    EXPECT_EQ(a.fine_to_expert, s.fine_to_expert);
    EXPECT_EQ(a.checkpoint, "runs/seed/step_1.h5");
}

TEST(ModeSideFile, NonFiniteCentersAreRefusedAtRead) {
    // A NaN center compares false with every distance: the nearest center of every
    // text would be center 0, every class routed to expert 0 (the fault reported).
    // The right value: routing on the finite file sends the second class to expert 1.
    TempDir d;
    SideFile s;
    s.write(d / "good.h5");
    const Assignment good = read_assignment(d / "good.h5", false, "--assign");
    const RoutingCenters c{good.m, good.dim, good.n_experts, good.fine_centers.data(), good.fine_to_expert.data()};
    const float classes[6] = {1, 0, 0, 0, 0, 1};  // near center 0 (expert 0) and center 2 (expert 1)
    const std::vector<TextRoute> routes = route_texts(classes, 2, c);
    EXPECT_EQ(routes[0].expert, 0);
    EXPECT_EQ(routes[1].expert, 1);

    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        SideFile b;
        b.fine[size_t(1 * 3 + 2)] = bad;
        const std::string p = d / (std::isnan(bad) ? "nan.h5" : "inf.h5");
        b.write(p);
        for (const bool rows : {false, true})
            expect_error([&] { read_assignment(p, rows, "--assign"); },
                         {"--assign", p, "/centers/fine", "fine center 1 holds", "component 2", "finite"});
    }
}

TEST(ModeSideFile, ExpertsAndAttributesMustAgreeWithTheDatasets) {
    TempDir d;
    auto refused = [&](const std::string& name, const SideFile& s, bool rows, std::vector<std::string> needles) {
        const std::string p = d / name;
        s.write(p);
        needles.insert(needles.begin(), p);
        expect_error([&] { read_assignment(p, rows, "mode.assign"); }, needles);
    };
    SideFile s;
    s.fine_to_expert[2] = 5;
    refused("map.h5", s, false, {"mode.assign", "/centers/fine_to_expert maps fine center 2 to expert 5", "2 experts"});
    s = SideFile();
    s.fine_to_expert[1] = -1;
    refused("neg.h5", s, false, {"fine center 1 to expert -1"});
    s = SideFile();
    s.n = 5;  // more experts than fine centers
    refused("n.h5", s, false, {"5 experts (attribute n)", "expected 1 to m = 4"});
    s = SideFile();
    s.n = int64_t(1) << 40;  // would size every per-expert vector
    refused("n40.h5", s, false, {"1099511627776 experts"});
    s = SideFile();
    s.m = 7;
    refused("m.h5", s, false, {"attribute m = 7", "4 centers"});
    s = SideFile();
    s.dim = 2;
    refused("dim.h5", s, false, {"attribute dim = 2"});
    s = SideFile();
    s.n_examples = 9;
    refused("nex.h5", s, false, {"attribute n_examples = 9", "6 rows"});
    s = SideFile();
    s.fine_to_expert.pop_back();
    refused("short.h5", s, false, {"/centers/fine_to_expert must be [4]"});
    s = SideFile();
    s.coarse = {1, 0, 0};  // [1, 3] for 2 experts
    {
        const std::string p = d / "coarse.h5";
        H5File f(p, H5File::Mode::create_exclusive);
        f.write_f32("/centers/fine", s.fine.data(), {4, 3});
        f.write_i32("/centers/fine_to_expert", s.fine_to_expert.data(), {4});
        f.write_f32("/centers/coarse", s.coarse.data(), {1, 3});
        f.write_i32("/assign/expert", s.assign_expert.data(), {6});
    }
    expect_error([&] { read_assignment(d / "coarse.h5", false, "x"); }, {"/centers/coarse must be [2, 3]"});
    // Rows (checked when read with rows, as training reads them).
    s = SideFile();
    s.assign_expert[3] = 7;
    s.write(d / "row.h5");
    EXPECT_NO_THROW(read_assignment(d / "row.h5", false, "mode.assign"));
    expect_error([&] { read_assignment(d / "row.h5", true, "mode.assign"); },
                 {d / "row.h5", "/assign/expert row 3 holds 7", "2 experts"});
    s = SideFile();
    s.assign_expert[4] = 1;  // its fine center 3 belongs to expert 0
    refused("disagree.h5", s, true, {"row 4 is assigned to expert 1", "fine center 3 belongs to expert 0"});
    s = SideFile();
    s.assign_fine[5] = 4;
    refused("fine.h5", s, true, {"/assign/fine row 5 holds 4", "4 fine centers"});
    // Not a side file at all.
    {
        H5File f(d / "other.h5", H5File::Mode::create_exclusive);
        const int32_t v = 1;
        f.write_i32("/x", &v, {1});
    }
    expect_error([&] { read_assignment(d / "other.h5", false, "--assign"); },
                 {"--assign", "other.h5", "no dataset /assign/expert", "`curaclip cluster` side file"});
    expect_error([&] { read_assignment(d / "missing.h5", false, "--assign"); }, {"missing.h5", "does not exist"});
}

// A chunked float dataset `name` of dims with no chunk ever written.
void unwritten_f32(H5File& f, const char* name, std::vector<hsize_t> dims) {
    std::lock_guard<std::recursive_mutex> lock(io::hdf5_mutex());
    H5Id space(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
    H5Id dcpl(H5Pcreate(H5P_DATASET_CREATE));
    std::vector<hsize_t> chunk = dims;
    chunk[0] = 1;
    ASSERT_GE(H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data()), 0);
    H5Id lcpl(H5Pcreate(H5P_LINK_CREATE));
    H5Pset_create_intermediate_group(lcpl.get(), 1);
    H5Id ds(H5Dcreate2(f.id(), name, H5T_IEEE_F32LE, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT));
    ASSERT_TRUE(ds.valid());
}

TEST(ModeSideFile, ShapesClaimingMoreThanTheFileHoldsAreRefused) {
    TempDir d;
    SideFile s;
    const std::string p = d / "huge.h5";
    {
        H5File f(p, H5File::Mode::create_exclusive);
        unwritten_f32(f, "/centers/fine", {hsize_t(1) << 40, 3});
        f.write_i32("/centers/fine_to_expert", s.fine_to_expert.data(), {4});
        f.write_i32("/assign/expert", s.assign_expert.data(), {6});
    }
    expect_error([&] { read_assignment(p, false, "--assign"); },
                 {"--assign", p, "'/centers/fine'", "[1099511627776, 3]", "the whole file is"});
    // Embeddings for `cluster`: the same, at open.
    const std::string e = d / "emb.h5";
    {
        H5File f(e, H5File::Mode::create_exclusive);
        unwritten_f32(f, "/caption_emb", {hsize_t(1) << 40, 64});
    }
    expect_error([&] { EmbeddingReader r(e, "/caption_emb"); }, {e, "'/caption_emb'", "[1099511627776, 64]"});
}

TEST(ModeSideFile, NonFiniteEmbeddingsAreRefusedAsTheyAreRead) {
    TempDir d;
    const std::string e = d / "emb.h5";
    std::vector<float> x(5 * 4, 0.5f);
    x[size_t(3 * 4 + 1)] = std::numeric_limits<float>::quiet_NaN();
    {
        H5File f(e, H5File::Mode::create_exclusive);
        f.write_f32("/caption_emb", x.data(), {5, 4});
    }
    const EmbeddingReader r(e, "/caption_emb");
    std::vector<float> out(5 * 4);
    r.read(0, 3, out.data());  // rows 0..2 are finite
    EXPECT_EQ(out[0], 0.5f);
    expect_error([&] { r.read(2, 3, out.data()); }, {e, "'/caption_emb' row 3", "component 1", "finite"});
}

// A world of one (MPI_Init once per process; suites *WithMpi run without leak checking).
const Communicator& self() {
    static MpiEnvironment env;
    static Communicator world = Communicator::world();
    return world;
}

TEST(ModeSideFileWithMpi, AFailedWriteLeavesNoTmpBehind) {
    TempDir d;
    const std::string out = d / "assign.h5";
    const std::vector<int32_t> rows = {1, 2, 3};
    const std::vector<RowBlock> blocks = {{"/assign/expert", DType::i32, 3, 0, 0, 3, rows.data()}};
    // The header fails half-way (as a full disk would): neither out nor out.tmp remains.
    expect_error([&] {
        write_side_file(self(), out, [](H5File& f) {
            f.set_attr("/", "kind", std::string("mode_clusters"));
            CC_USER_FAIL("header failed");
        }, blocks);
    }, {"header failed"});
    EXPECT_FALSE(std::filesystem::exists(out));
    EXPECT_FALSE(std::filesystem::exists(out + ".tmp"));
    // A row block that does not fit its dataset: the same.
    const std::vector<RowBlock> bad = {{"/assign/expert", DType::i32, 3, 0, 2, 3, rows.data()}};
    EXPECT_THROW(write_side_file(self(), out, nullptr, bad), Error);
    EXPECT_FALSE(std::filesystem::exists(out + ".tmp"));
    // A good write, then an existing output is refused and left as it was.
    write_side_file(self(), out, nullptr, blocks);
    EXPECT_EQ(H5File(out, H5File::Mode::read).read_i32("/assign/expert"), rows);
    expect_error([&] { check_new_output(out, "--out"); }, {"--out", out, "exists already"});
}

}  // namespace
}  // namespace curaclip::mode
