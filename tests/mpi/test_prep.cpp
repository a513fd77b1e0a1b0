// `curaclip prep` of users' own data under MPI (src/prep/prep_job.h): webdataset
// shards with PNG, WebP and JPEG members written by the real encoders, bad samples
// of every kind, and
//   - P ranks write exactly the bytes one rank writes (shards, joined file,
//     rejects list, tokenizer),
//   - every kept row holds its pixels, caption, label and key, in input order,
//   - every bad sample is skipped and listed with its reason,
//   - a run killed between shards resumes to the same bytes,
//   - a rerun with other options, and too many rejects, are refused on every rank.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "io/dataset_reader.h"
#include "io/hdf5_file.h"
#include "mpi/communicator.h"
#include "prep/image.h"
#include "prep/prep_job.h"
#include "tests/common/prep_inputs.h"
#include "tests/common/test_files.h"

namespace curaclip::prep {
namespace {

namespace fs = std::filesystem;
using testing::encode_image;
using testing::read_file_bytes;
using testing::TarMember;

constexpr int kSide = 12;

// Pixels of good sample k: a pattern no two samples share.
std::vector<uint8_t> pixels_of(int k) {
    std::vector<uint8_t> px(size_t(kSide * kSide * 3));
    for (int y = 0; y < kSide; ++y)
        for (int x = 0; x < kSide; ++x)
            for (int c = 0; c < 3; ++c) px[size_t((y * kSide + x) * 3 + c)] = uint8_t((k * 37 + y * 11 + x * 5 + c * 70) % 256);
    return px;
}

struct Expected {
    std::string key, caption, format;
    int k = 0;
    int label = -1;
};

struct Inputs {
    std::string dir;
    std::vector<Expected> kept;                      // in output order
    std::map<std::string, std::string> rejected;     // key -> reason
};

// Three tar shards; shard s holds good samples and some bad ones.
Inputs make_inputs(const std::string& dir) {
    Inputs in;
    in.dir = dir;
    int k = 0;
    for (int s = 0; s < 3; ++s) {
        std::vector<TarMember> m;
        auto good = [&](const std::string& key, const std::string& fmt, const std::string& caption,
                        const std::string& stored, bool json = false) {
            m.push_back({key + "." + fmt, encode_image(pixels_of(k), kSide, kSide, 3, fmt)});
            if (json) m.push_back({key + ".json", "{\"caption\": \"" + caption + "\", \"url\": \"http://x\"}"});
            else m.push_back({key + ".txt", caption});
            m.push_back({key + ".cls", std::to_string(k % 4)});
            in.kept.push_back({key, stored, fmt, k, k % 4});
            ++k;
        };
        const std::string p = "s" + std::to_string(s) + "_";
        good(p + "a", "png", "a red  thing " + std::to_string(s), "a red  thing " + std::to_string(s));
        good(p + "b", "webp", "  re\xcc\x81sume\xcc\x81 " + std::to_string(s), "r\xc3\xa9sum\xc3\xa9 " + std::to_string(s));
        good(p + "c", "jpg", "a jpeg " + std::to_string(s), "a jpeg " + std::to_string(s), /*json=*/s == 1);
        if (s == 0) {
            m.push_back({p + "junk.jpg", "this is not a jpeg at all"});
            m.push_back({p + "junk.txt", "junk"});
            in.rejected[p + "junk"] = "undecodable_image";
            m.push_back({p + "nocap.png", encode_image(pixels_of(99), kSide, kSide, 3, "png")});
            in.rejected[p + "nocap"] = "missing_caption";
            m.push_back({p + "empty.png", encode_image(pixels_of(98), kSide, kSide, 3, "png")});
            m.push_back({p + "empty.txt", " \t "});
            in.rejected[p + "empty"] = "empty_caption";
        }
        if (s == 1) {
            m.push_back({p + "latin1.png", encode_image(pixels_of(97), kSide, kSide, 3, "png")});
            m.push_back({p + "latin1.txt", "caf\xe9"});
            in.rejected[p + "latin1"] = "invalid_utf8";
            const std::string png = encode_image(pixels_of(96), kSide, kSide, 3, "png");
            m.push_back({p + "cut.png", png.substr(0, png.size() / 2)});
            m.push_back({p + "cut.txt", "cut in half"});
            in.rejected[p + "cut"] = "undecodable_image";
            m.push_back({p + "noimg.txt", "no image member"});
            in.rejected[p + "noimg"] = "missing_image";
        }
        if (s == 2) {  // the same key again, not next to its first use
            m.push_back({p + "a.png", encode_image(pixels_of(95), kSide, kSide, 3, "png")});
            m.push_back({p + "a.txt", "again"});
            in.rejected[p + "a"] = "duplicate_key";
        }
        testing::write_tar(dir + "/shards/0000" + std::to_string(s) + ".tar", m);
    }
    // What img2dataset leaves beside its tars: ignored.
    testing::write_file_bytes(dir + "/shards/00000.parquet", "PAR1");
    testing::write_file_bytes(dir + "/shards/00000_stats.json", "{}");
    return in;
}

PrepOptions options(const Inputs& in, const std::string& out) {
    PrepOptions o;
    o.kind = "webdataset";
    o.inputs = {in.dir + "/shards/{00000..00002}.tar"};
    o.out_dir = out;
    o.image.size = kSide;
    o.image.channels = 3;
    o.context = 12;
    o.vocab = 600;
    o.max_reject = 0.5;
    o.source.classnames_file = in.dir + "/classes.txt";
    o.creation_command = "curaclip prep webdataset (test)";
    o.quiet = true;
    return o;
}

// Every file under dir, relative path -> bytes.
std::map<std::string, std::string> tree(const std::string& dir) {
    std::map<std::string, std::string> t;
    for (const auto& e : fs::recursive_directory_iterator(dir))
        if (e.is_regular_file()) t[fs::relative(e.path(), dir).string()] = read_file_bytes(e.path().string());
    return t;
}

class Prep : public ::testing::Test {
protected:
    void SetUp() override {
        int64_t nonce = world_.rank() == 0 ? int64_t(::getpid()) : 0;
        world_.broadcast(&nonce, 1, 0);
        dir_ = (fs::temp_directory_path() / ("curaclip_prep_" + std::to_string(nonce))).string();
        init_image_codecs();
        if (world_.rank() == 0) {
            fs::create_directories(dir_);
            in_ = make_inputs(dir_);
            testing::write_file_bytes(dir_ + "/classes.txt", "zero\none\ntwo\nthree\n");
            // The reference: one rank alone.
            const Communicator self(MPI_COMM_SELF, false);
            ref_ = run_prep(options(in_, dir_ + "/ref"), self);
        }
        int64_t counts[2] = {ref_.kept, ref_.rejected};
        world_.broadcast(counts, 2, 0);
        ref_.kept = counts[0];
        ref_.rejected = counts[1];
        if (world_.rank() != 0) in_.dir = dir_;
    }
    void TearDown() override {
        world_.barrier();
        if (world_.rank() == 0) fs::remove_all(dir_);
    }
    const Communicator world_ = Communicator::world();
    std::string dir_;
    Inputs in_;
    PrepSummary ref_;
};

TEST_F(Prep, AnyRankCountWritesTheSameBytes) {
    const PrepSummary s = run_prep(options(in_, dir_ + "/out"), world_);
    EXPECT_EQ(s.units, 3);
    EXPECT_EQ(s.read, 9 + 7);  // 9 good, 7 bad (the duplicate counts as read)
    EXPECT_EQ(s.kept, 9);
    EXPECT_EQ(s.rejected, 7);
    if (world_.rank() != 0) return;
    const auto want = tree(dir_ + "/ref"), got = tree(dir_ + "/out");
    ASSERT_EQ(want.size(), got.size());
    for (const auto& [name, bytes] : want) {
        ASSERT_TRUE(got.count(name)) << name;
        EXPECT_TRUE(got.at(name) == bytes) << name << " differs between 1 and " << world_.size() << " ranks";
    }
    EXPECT_TRUE(want.count("data.h5") && want.count("data.rejects.tsv") && want.count("tokenizer.bpe") &&
                want.count("data-shards/part-00002.h5"));
}

TEST_F(Prep, EveryRowLandsAndEveryBadSampleIsListed) {
    if (world_.rank() != 0) return;
    io::DatasetReader r(dir_ + "/ref/data.h5", io::DatasetExpect{kSide, 3, 12, ref_.tokenizer_id});
    ASSERT_EQ(r.size(), int64_t(in_.kept.size()));
    EXPECT_EQ(r.classnames(), (std::vector<std::string>{"zero", "one", "two", "three"}));
    const int64_t n = r.size();
    std::vector<uint8_t> im(size_t(n) * kSide * kSide * 3);
    std::vector<int32_t> tk(static_cast<size_t>(n) * 12), lb(static_cast<size_t>(n));
    r.read_range(0, n, im.data(), tk.data(), lb.data(), nullptr);
    const std::vector<std::string> caps = r.read_captions(0, n);
    H5File f(dir_ + "/ref/data.h5", H5File::Mode::read);
    const std::vector<std::string> keys = io::h5_read_strings(f.id(), "data.h5", "/keys");
    for (int64_t i = 0; i < n; ++i) {
        const Expected& e = in_.kept[size_t(i)];
        EXPECT_EQ(keys[size_t(i)], e.key);
        EXPECT_EQ(caps[size_t(i)], e.caption) << e.key;
        EXPECT_EQ(lb[size_t(i)], e.label) << e.key;
        const std::vector<uint8_t> want = pixels_of(e.k);
        const uint8_t* got = im.data() + size_t(i) * want.size();
        int max_diff = 0;
        for (size_t j = 0; j < want.size(); ++j) max_diff = std::max(max_diff, std::abs(int(got[j]) - int(want[j])));
        // PNG and lossless WebP at the recipe's size: exact. JPEG: lossy.
        EXPECT_LE(max_diff, e.format == "jpg" ? 40 : 0) << e.key << " (" << e.format << ")";
        EXPECT_EQ(tk[size_t(i) * 12], r.eot_id() - 1) << "row " << i << " starts with start of text";
    }
    // The rejects file: one line per bad sample, shard, key and reason.
    const std::string rejects = read_file_bytes(dir_ + "/ref/data.rejects.tsv");
    std::map<std::string, std::string> listed;
    size_t pos = rejects.find('\n') + 1;  // header
    while (pos < rejects.size()) {
        const size_t nl = rejects.find('\n', pos);
        const std::string line = rejects.substr(pos, nl - pos);
        const size_t t1 = line.find('\t'), t2 = line.find('\t', t1 + 1), t3 = line.find('\t', t2 + 1);
        EXPECT_NE(line.substr(0, t1).find(".tar"), std::string::npos) << line;
        listed[line.substr(t1 + 1, t2 - t1 - 1)] = line.substr(t2 + 1, t3 - t2 - 1);
        pos = nl + 1;
    }
    EXPECT_EQ(listed, in_.rejected);
    EXPECT_EQ(ref_.rejected_by_reason[int(RejectReason::undecodable_image)], 2);
    EXPECT_EQ(f.attr_i64("/", "samples_rejected"), 7);
}

TEST_F(Prep, KilledBetweenShardsResumesToTheSameBytes) {
    const std::string out = dir_ + "/resumed";
    if (world_.rank() == 0) {
        // What a kill during shard 1 leaves: shards 0 and 2 finished, a partial
        // shard 1 (.tmp), no joined file, no rejects list.
        fs::copy(dir_ + "/ref", out, fs::copy_options::recursive);
        for (const char* gone : {"data.h5", "data.rejects.tsv", "data-shards/part-00001.h5",
                                 "data-shards/part-00001.rejects.tsv"})
            fs::remove(out + "/" + gone);
        testing::write_file_bytes(out + "/data-shards/part-00001.h5.tmp", "half a shard");
    }
    world_.barrier();
    const PrepSummary s = run_prep(options(in_, out), world_);
    EXPECT_EQ(s.units_skipped, 2);
    EXPECT_EQ(s.kept, ref_.kept);
    EXPECT_EQ(s.rejected, ref_.rejected);
    if (world_.rank() == 0) {
        const auto want = tree(dir_ + "/ref"), got = tree(out);
        ASSERT_EQ(want.size(), got.size());
        for (const auto& [name, bytes] : want) EXPECT_TRUE(got.count(name) && got.at(name) == bytes) << name;
    }
    // Finished: a second run refuses to overwrite, on every rank.
    testing::expect_error([&] { run_prep(options(in_, out), world_); }, {"data.h5", "exists already"});
}

TEST_F(Prep, OtherOptionsAndTooManyRejectsAreRefusedOnEveryRank) {
    const std::string out = dir_ + "/other";
    if (world_.rank() == 0) {
        fs::copy(dir_ + "/ref", out, fs::copy_options::recursive);
        fs::remove(out + "/data.h5");
        fs::remove(out + "/data.rejects.tsv");
    }
    world_.barrier();
    PrepOptions o = options(in_, out);
    o.image.size = kSide + 4;  // the finished shards were made at another size
    testing::expect_error([&] { run_prep(o, world_); }, {"rank(s) failed"});
    // Too many rejects: an error naming the counts; shards stay, no dataset.
    PrepOptions strict = options(in_, dir_ + "/strict");
    strict.max_reject = 0.01;
    testing::expect_error([&] { run_prep(strict, world_); },
                          {"7 of 16 samples rejected", "--max-reject 0.01", "rejects.tsv"});
    world_.barrier();
    if (world_.rank() == 0) {
        EXPECT_FALSE(fs::exists(dir_ + "/strict/data.h5"));
        EXPECT_TRUE(fs::exists(dir_ + "/strict/data-shards/part-00002.h5"));
    }
    // A source that is not there: the same clear error on every rank.
    PrepOptions missing = options(in_, dir_ + "/missing");
    missing.inputs = {dir_ + "/nowhere/{00000..00002}.tar"};
    testing::expect_error([&] { run_prep(missing, world_); }, {"nowhere"});
}

}  // namespace
}  // namespace curaclip::prep
