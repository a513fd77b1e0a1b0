// Datasets: Fashion-MNIST idx parsing, captions, the HDF5 dataset writer and
// reader (round trip and refusals) and `curaclip prep fashion-mnist` on a small
// synthetic source (plus, when installed, on the real files with --limit).
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "cli/cmd_prep.h"
#include "core/check.h"
#include "core/philox.h"
#include "prep/fashion_mnist_captions.h"
#include "io/dataset_reader.h"
#include "io/dataset_writer.h"
#include "io/hdf5_file.h"
#include "io/loader.h"
#include "mpi/communicator.h"
#include "prep/fashion_mnist.h"
#include "prep/fashion_mnist_job.h"
#include "tests/common/test_files.h"
#include "tokenizer/bpe_tokenizer.h"

namespace curaclip::io {
namespace {

namespace fs = std::filesystem;
using namespace curaclip::prep;  // the Fashion-MNIST converter (src/prep/)
using testing::expect_error;
using testing::TempDir;

void put_be32(std::string& s, uint32_t v) {
    for (int k = 3; k >= 0; --k) s.push_back(char((v >> (8 * k)) & 0xFF));
}

void write_gz(const std::string& path, const std::string& bytes) {
    gzFile f = gzopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(gzwrite(f, bytes.data(), unsigned(bytes.size())), int(bytes.size()));
    gzclose(f);
}

// Synthetic "fashion" images: a centred rectangle of varying size, brightness
// and stripe contrast, so that every caption attribute varies.
std::vector<uint8_t> synthetic_images(int64_t n, int s = 28) {
    std::vector<uint8_t> px(size_t(n) * s * s, 0);
    Philox rng(7, RngPurpose::test);
    for (int64_t i = 0; i < n; ++i) {
        const int half_w = 2 + int(rng.below(11)), half_h = 2 + int(rng.below(11));
        const int base = 60 + int(rng.below(180)), stripe = int(rng.below(60));
        for (int y = s / 2 - half_h; y < s / 2 + half_h; ++y)
            for (int x = s / 2 - half_w; x < s / 2 + half_w; ++x)
                px[size_t(i) * s * s + size_t(y) * s + x] = uint8_t(std::min(255, base + ((y % 2) ? stripe : 0)));
    }
    return px;
}

// Writes {prefix}-images-idx3-ubyte.gz and {prefix}-labels-idx1-ubyte.gz.
void write_fake_split(const std::string& dir, const std::string& prefix, int64_t n) {
    std::string im, lb;
    put_be32(im, 0x803);
    put_be32(im, uint32_t(n));
    put_be32(im, 28);
    put_be32(im, 28);
    const auto px = synthetic_images(n);
    im.append(reinterpret_cast<const char*>(px.data()), px.size());
    put_be32(lb, 0x801);
    put_be32(lb, uint32_t(n));
    for (int64_t i = 0; i < n; ++i) lb.push_back(char(i % 10));
    write_gz(dir + "/" + prefix + "-images-idx3-ubyte.gz", im);
    write_gz(dir + "/" + prefix + "-labels-idx1-ubyte.gz", lb);
}

int run_prep(std::vector<std::string> args) {
    args.insert(args.begin(), {"prep", "fashion-mnist"});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    return cmd_prep(int(argv.size()), argv.data(), nullptr);
}

// ---- idx ----------------------------------------------------------------------------

TEST(FashionMnist, ParsesIdxAndRejectsBadFiles) {
    TempDir d;
    write_fake_split(d.path.string(), "train", 40);
    write_fake_split(d.path.string(), "t10k", 12);
    const FashionMnistSplit s = load_fashion_mnist(d.path.string(), "train");
    EXPECT_EQ(s.images.count, 40);
    EXPECT_EQ(s.images.rows, 28);
    EXPECT_EQ(s.images.cols, 28);
    EXPECT_EQ(s.labels.size(), 40u);
    EXPECT_EQ(s.images.pixels, synthetic_images(40));
    EXPECT_EQ(s.labels[13], 3);
    EXPECT_EQ(load_fashion_mnist(d.path.string(), "test", 5).images.count, 5);

    // Truncated pixel data.
    std::string im;
    put_be32(im, 0x803);
    put_be32(im, 10);
    put_be32(im, 28);
    put_be32(im, 28);
    im.append(28 * 28 * 3, char(1));
    write_gz(d / "short-images-idx3-ubyte.gz", im);
    expect_error([&] { read_idx_images(d / "short-images-idx3-ubyte"); },
                 {"short-images-idx3-ubyte.gz", "truncated"});
    // A gzip stream cut in the middle.
    {
        std::ifstream f(d / "train-images-idx3-ubyte.gz", std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(f)), {});
        std::ofstream o(d / "cut-images-idx3-ubyte.gz", std::ios::binary);
        o.write(bytes.data(), std::streamsize(bytes.size() / 2));
    }
    expect_error([&] { read_idx_images(d / "cut-images-idx3-ubyte.gz"); }, {"cut-images-idx3-ubyte.gz"});
    // Wrong magic: a label file read as images.
    expect_error([&] { read_idx_images(d / "train-labels-idx1-ubyte.gz"); },
                 {"train-labels-idx1-ubyte.gz", "magic"});
    // Missing.
    expect_error([&] { load_fashion_mnist(d / "nowhere", "train"); }, {"nowhere/train-images-idx3-ubyte"});
    // Label count mismatch.
    write_fake_split(d.path.string(), "odd", 6);
    std::string lb;
    put_be32(lb, 0x801);
    put_be32(lb, 5);
    lb.append(5, char(1));
    write_gz(d / "odd-labels-idx1-ubyte.gz", lb);
    fs::rename(d / "odd-images-idx3-ubyte.gz", d / "train-images-idx3-ubyte.gz");
    fs::rename(d / "odd-labels-idx1-ubyte.gz", d / "train-labels-idx1-ubyte.gz");
    expect_error([&] { load_fashion_mnist(d.path.string(), "train"); }, {"train-labels-idx1-ubyte", "5 labels"});
}

// ---- captions -----------------------------------------------------------------------

TEST(Captions, ClassPlusAttributesBalancedAndVaried) {
    const int64_t n = 600;
    const auto px = synthetic_images(n);
    const auto stats = image_stats_batch(px.data(), n, 28, 28, 1);
    const CaptionThresholds th = caption_thresholds(stats);
    std::vector<int32_t> labels(n);
    for (int64_t i = 0; i < n; ++i) labels[size_t(i)] = int32_t(i % 10);
    const auto& names = fashion_mnist_classnames();
    const auto caps = make_captions(stats, labels, names, th, 99, 0);
    EXPECT_EQ(caps, make_captions(stats, labels, names, th, 99, 0));  // deterministic

    std::map<std::string, int> words;
    std::set<int> templates;
    for (int64_t i = 0; i < n; ++i) {
        const std::string& c = caps[size_t(i)];
        std::string cls = names[size_t(labels[size_t(i)])];
        std::transform(cls.begin(), cls.end(), cls.begin(), ::tolower);
        EXPECT_NE(c.find(cls), std::string::npos) << c;
        const CaptionAttributes a = caption_attributes(stats[size_t(i)], th);
        int attrs = 0;
        for (const char* w : {a.brightness, a.size, a.texture}) {
            attrs += c.find(w) != std::string::npos;
            ++words[w];
        }
        EXPECT_GE(attrs, 2) << c;
        for (int t = 0; t < num_caption_templates(); ++t)
            if (make_caption(names[size_t(labels[size_t(i)])], a, t) == c) templates.insert(t);
    }
    EXPECT_GE(int(templates.size()), 5);
    // Tertiles / median: each word about equally frequent.
    for (const char* w : {"dark", "gray", "bright", "small", "medium", "large"})
        EXPECT_NEAR(words[w] / double(n), 1.0 / 3, 0.08) << w;
    for (const char* w : {"plain", "patterned"}) EXPECT_NEAR(words[w] / double(n), 0.5, 0.08) << w;

    // Template ids give distinct phrasings.
    std::set<std::string> distinct;
    for (int t = 0; t < num_caption_templates(); ++t)
        distinct.insert(make_caption("ankle boot", {"dark", "large", "plain"}, t));
    EXPECT_EQ(int(distinct.size()), num_caption_templates());
}

TEST(Captions, FitTheDefaultContext) {
    // Train a tokenizer on every possible caption; none may be cut at context 16.
    std::vector<std::string> all;
    for (const auto& c : fashion_mnist_classnames())
        for (const char* b : {"dark", "gray", "bright"})
            for (const char* s : {"small", "medium", "large"})
                for (const char* t : {"plain", "patterned"})
                    for (int k = 0; k < num_caption_templates(); ++k) all.push_back(make_caption(c, {b, s, t}, k));
    const BpeTokenizer tok = BpeTokenizer::train(all, 1024);
    for (const auto& c : all) EXPECT_LE(tok.tokenize(c).size(), 14u) << c;
}

// ---- writer / reader ---------------------------------------------------------------

DatasetContents small_dataset(int64_t n = 37, int s = 5, int c = 3, int ctx = 6) {
    DatasetContents d;
    d.count = n;
    d.image_size = s;
    d.channels = c;
    d.context_length = ctx;
    for (int64_t i = 0; i < n; ++i) {
        for (int k = 0; k < s * s * c; ++k) d.images.push_back(uint8_t((i * 31 + k) % 251));
        for (int t = 0; t < ctx; ++t) d.tokens.push_back(int32_t(i * 100 + t));
        d.captions.push_back("caption number " + std::to_string(i) + (i % 5 ? "" : " — ünïcode"));
        d.labels.push_back(int32_t(i % 4));
        d.corrupted.push_back(uint8_t(i % 3 == 0));
    }
    d.classnames = {"zero", "one", "two", "three"};
    return d;
}

DatasetAttributes small_attrs() {
    DatasetAttributes a;
    a.tokenizer_id = "00000000deadbeef";
    a.source = "synthetic";
    a.creation_command = "test_dataset";
    a.extra = {{"caption_thresholds", "none"}};
    return a;
}

TEST(Dataset, RoundTrip) {
    TempDir d;
    const std::string p = d / "ds.h5";
    const DatasetContents w = small_dataset();
    write_dataset(p, w, small_attrs());
    EXPECT_FALSE(path_exists(p + ".tmp"));

    DatasetReader r(p, DatasetExpect{5, 3, 6, "00000000deadbeef"});
    EXPECT_EQ(r.size(), 37);
    EXPECT_EQ(r.image_size(), 5);
    EXPECT_EQ(r.channels(), 3);
    EXPECT_EQ(r.context_length(), 6);
    EXPECT_EQ(r.tokenizer_id(), "00000000deadbeef");
    EXPECT_EQ(r.source(), "synthetic");
    EXPECT_EQ(r.creation_command(), "test_dataset");
    EXPECT_EQ(r.attribute("caption_thresholds"), "none");
    EXPECT_TRUE(r.has_labels());
    EXPECT_EQ(r.classnames(), w.classnames);
    EXPECT_EQ(r.read_captions(0, 37), w.captions);
    EXPECT_EQ(r.read_captions(std::vector<int64_t>{5, 2}), (std::vector<std::string>{w.captions[5], w.captions[2]}));

    std::vector<uint8_t> im(37 * 75), cor(37);
    std::vector<int32_t> tk(37 * 6), lb(37);
    r.read_range(0, 37, im.data(), tk.data(), lb.data(), cor.data());
    EXPECT_EQ(im, w.images);
    EXPECT_EQ(tk, w.tokens);
    EXPECT_EQ(lb, w.labels);
    EXPECT_EQ(cor, w.corrupted);

    // Scattered rows in any order, with a repeat and a consecutive run.
    const std::vector<int64_t> idx = {30, 2, 3, 4, 36, 0, 2, 17};
    std::vector<uint8_t> im2(idx.size() * 75), cor2(idx.size());
    std::vector<int32_t> tk2(idx.size() * 6), lb2(idx.size());
    r.read_rows(idx.data(), idx.size(), im2.data(), tk2.data(), lb2.data(), cor2.data());
    for (size_t k = 0; k < idx.size(); ++k) {
        const size_t i = size_t(idx[k]);
        EXPECT_TRUE(std::equal(im2.begin() + k * 75, im2.begin() + (k + 1) * 75, w.images.begin() + i * 75));
        EXPECT_EQ(tk2[k * 6 + 1], w.tokens[i * 6 + 1]);
        EXPECT_EQ(lb2[k], w.labels[i]);
        EXPECT_EQ(cor2[k], w.corrupted[i]);
    }
    expect_error([&] { const int64_t bad = 37; r.read_rows(&bad, 1, im2.data(), nullptr, nullptr, nullptr); },
                 {p, "row 37 out of range"});
}

TEST(Dataset, OptionalDatasetsAbsent) {
    TempDir d;
    DatasetContents w = small_dataset(4, 2, 1, 3);
    w.labels.clear();
    w.classnames.clear();
    w.corrupted.clear();
    write_dataset(d / "x.h5", w, small_attrs());
    DatasetReader r(d / "x.h5");
    EXPECT_FALSE(r.has_labels());
    EXPECT_TRUE(r.classnames().empty());
    std::vector<int32_t> lb(4);
    std::vector<uint8_t> cor(4, 9);
    r.read_range(0, 4, nullptr, nullptr, lb.data(), cor.data());
    EXPECT_EQ(lb, std::vector<int32_t>(4, -1));
    EXPECT_EQ(cor, std::vector<uint8_t>(4, 0));
}

TEST(Dataset, Refusals) {
    TempDir d;
    const std::string p = d / "ds.h5";
    write_dataset(p, small_dataset(), small_attrs());
    const auto size_before = fs::file_size(p);

    // Existing output: refused, original untouched, no .tmp left.
    expect_error([&] { write_dataset(p, small_dataset(3), small_attrs()); }, {p, "overwrite"});
    EXPECT_EQ(fs::file_size(p), size_before);
    EXPECT_FALSE(path_exists(p + ".tmp"));
    EXPECT_EQ(DatasetReader(p).size(), 37);

    // Missing file.
    expect_error([&] { DatasetReader r(d / "missing.h5"); }, {"missing.h5", "not found"});
    // Mismatches against what the consumer expects.
    expect_error([&] { DatasetReader r(p, DatasetExpect{28, -1, -1, ""}); },
                 {p, "/images", "5x5", "expected 28x28"});
    expect_error([&] { DatasetReader r(p, DatasetExpect{-1, 1, -1, ""}); }, {p, "/images", "3 channels", "expected 1"});
    expect_error([&] { DatasetReader r(p, DatasetExpect{-1, -1, 77, ""}); }, {p, "/tokens", "6", "expected 77"});
    expect_error([&] { DatasetReader r(p, DatasetExpect{-1, -1, -1, "0123456789abcdef"}); },
                 {p, "/tokens", "00000000deadbeef", "expected tokenizer 0123456789abcdef"});

    // Truncated copies: half the file, and just the superblock.
    for (double frac : {0.5, 0.9, 0.02}) {
        const std::string cut = d / ("cut" + std::to_string(int(frac * 100)) + ".h5");
        fs::copy_file(p, cut);
        fs::resize_file(cut, uintmax_t(double(size_before) * frac));
        expect_error([&] {
            DatasetReader r(cut);
            std::vector<uint8_t> im(37 * 75);
            r.read_range(0, 37, im.data(), nullptr, nullptr, nullptr);
            r.read_captions(0, 37);
        }, {cut});
    }
    // Garbage that is not HDF5 at all.
    { std::ofstream(d / "junk.h5") << "not an hdf5 file at all"; }
    expect_error([&] { DatasetReader r(d / "junk.h5"); }, {"junk.h5", "not an HDF5 file"});
    // An HDF5 file that is not a curaclip dataset.
    { H5File f(d / "other.h5", H5File::Mode::create_exclusive); const int32_t v = 1; f.write_i32("/x", &v, {1}); }
    expect_error([&] { DatasetReader r(d / "other.h5"); }, {"other.h5", "format_version"});
    // Inconsistent contents are refused by the writer.
    DatasetContents bad = small_dataset();
    bad.tokens.pop_back();
    expect_error([&] { write_dataset(d / "bad.h5", bad, small_attrs()); }, {"bad.h5", "/tokens"});
    EXPECT_FALSE(path_exists(d / "bad.h5"));
}

// Replaces dataset `name` of the curaclip dataset at path with an uncompressed
// chunked one of `dims` (chunks of one row) of which only rows [0, written) are
// written (zeros): a file whose shape claims more than it holds.
void replace_with_unwritten(const std::string& path, const char* name, hid_t type, std::vector<hsize_t> dims,
                            hsize_t written) {
    H5File f(path, H5File::Mode::read_write);
    std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
    ASSERT_GE(H5Ldelete(f.id(), name, H5P_DEFAULT), 0);
    H5Id space(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
    H5Id dcpl(H5Pcreate(H5P_DATASET_CREATE));
    std::vector<hsize_t> chunk = dims;
    chunk[0] = 1;
    ASSERT_GE(H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data()), 0);
    H5Id d(H5Dcreate2(f.id(), name, type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
    ASSERT_TRUE(d.valid());
    if (written == 0) return;
    std::vector<hsize_t> count = dims, start(dims.size(), 0);
    count[0] = written;
    hsize_t elems = 1;
    for (hsize_t c : count) elems *= c;
    std::vector<uint8_t> zeros(size_t(elems * H5Tget_size(type)), 0);
    H5Id mspace(H5Screate_simple(int(count.size()), count.data(), nullptr));
    ASSERT_GE(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr), 0);
    ASSERT_GE(H5Dwrite(d.get(), type, mspace.get(), space.get(), H5P_DEFAULT, zeros.data()), 0);
}

TEST(Dataset, ShapesClaimingMoreThanTheFileHoldsAreRefusedBeforeAnyAllocation) {
    TempDir d;
    // /images claiming 2^40 rows of a few bytes each: 82 TB in a file of kilobytes.
    const std::string huge = d / "huge.h5";
    write_dataset(huge, small_dataset(), small_attrs());
    replace_with_unwritten(huge, "/images", H5T_STD_U8LE, {hsize_t(1) << 40, 5, 5, 3}, 0);
    expect_error([&] { DatasetReader r(huge); },
                 {huge, "'/images'", "[1099511627776, 5, 5, 3]", "82.5 TB", "the whole file is",
                  "claims more rows than were written"});
    // /tokens of the right shape [37, 6] but only 20 of its 37 row chunks written: HDF5
    // would read zeros (rows without an end of text) for the rest.
    const std::string part = d / "part.h5";
    write_dataset(part, small_dataset(), small_attrs());
    replace_with_unwritten(part, "/tokens", H5T_STD_I32LE, {37, 6}, 20);
    expect_error([&] { DatasetReader r(part); }, {part, "'/tokens'", "[37, 6]", "only 480 bytes of it were ever written"});
    // The same for the optional row datasets.
    const std::string labels = d / "labels.h5";
    write_dataset(labels, small_dataset(), small_attrs());
    replace_with_unwritten(labels, "/labels", H5T_STD_I32LE, {37}, 3);
    expect_error([&] { DatasetReader r(labels); }, {labels, "'/labels'", "written"});
    // A complete file passes.
    write_dataset(d / "ok.h5", small_dataset(), small_attrs());
    EXPECT_EQ(DatasetReader(d / "ok.h5").size(), 37);
}

TEST(Dataset, TokenIdsAreCheckedAgainstTheModelVocabularyWithoutAnEotAttribute) {
    // small_dataset's row i holds ids i*100 .. i*100+5 and the file has no eot_id.
    TempDir d;
    const std::string p = d / "ds.h5";
    DatasetContents w = small_dataset();
    w.tokens[size_t(7 * 6 + 4)] = -1;  // a negative id in row 7
    write_dataset(p, w, small_attrs());
    {
        const DatasetReader r(p);  // no vocabulary, no end of text: nothing is checked
        EXPECT_FALSE(r.checks_tokens());
        EXPECT_EQ(r.first_bad_token_row(0, 37), -1);
    }
    DatasetExpect ex;
    ex.vocab_size = 3000;
    const DatasetReader r(p, ex);
    EXPECT_TRUE(r.checks_tokens());
    EXPECT_EQ(r.vocab_size(), 3000);
    EXPECT_EQ(r.first_bad_token_row(0, 37), 7);
    EXPECT_EQ(r.first_bad_token_row(8, 37), 30);  // row 30 holds 3000..3005
    EXPECT_EQ(r.first_bad_token_row(8, 30), -1);
    std::vector<int32_t> tk(6);
    expect_error([&] { r.read_range(7, 1, nullptr, tk.data(), nullptr, nullptr); },
                 {p, "/tokens row 7 holds id -1 at position 4", "cannot be negative"});
    expect_error([&] { r.read_range(30, 1, nullptr, tk.data(), nullptr, nullptr); },
                 {p, "/tokens row 30 holds id 3000 at position 0", "outside the model's vocabulary [0, 3000)"});
    r.read_range(8, 22, nullptr, std::vector<int32_t>(22 * 6).data(), nullptr, nullptr);  // rows 8..29 are fine
    // An end-of-text id the model cannot embed is refused at open.
    DatasetExpect both;
    both.eot_id = 3605;
    both.vocab_size = 3000;
    expect_error([&] { DatasetReader q(p, both); }, {p, "end-of-text id is 3605", "vocabulary has only 3000"});
}

// A world of one (MPI_Init once per process; suites *WithMpi run without leak checking).
const Communicator& self() {
    static MpiEnvironment env;
    static Communicator world = Communicator::world();
    return world;
}

TEST(DatasetWithMpi, LoaderRefusesABadTokenRowBeforeTheFirstBatch) {
    // Row 33 holds an id outside the model's vocabulary. Batches of 4 with this seed
    // may not draw it for a long time; the loader refuses at construction, naming it.
    TempDir d;
    const std::string p = d / "ds.h5";
    write_dataset(p, small_dataset(), small_attrs());
    LoaderOptions lo;
    lo.expect.vocab_size = 3300;
    lo.prefetch = 0;
    expect_error([&] { Loader l(p, 4, self(), 1, lo); }, {p, "/tokens row 33 holds id 3300", "[0, 3300)"});
    EXPECT_THROW(check_token_rows(DatasetReader(p, lo.expect), self()), Error);
    lo.expect.vocab_size = 3700;  // every id fits
    Loader ok(p, 4, self(), 1, lo);
    EXPECT_EQ(ok.next().size, 4);
    check_token_rows(DatasetReader(p, lo.expect), self());
}

// ---- prep ---------------------------------------------------------------------------

TEST(Prep, SyntheticSourceWithNoiseAndCurated) {
    TempDir src, out;
    write_fake_split(src.path.string(), "train", 400);
    write_fake_split(src.path.string(), "t10k", 60);
    const std::string o = out / "prep";
    EXPECT_EQ(run_prep({"--source", src.path.string(), "--out", o, "--noise", "0.25", "--curated", "50",
                        "--vocab", "700", "--seed", "5"}),
              0);
    const BpeTokenizer tok = BpeTokenizer::load(o + "/tokenizer.bpe");
    DatasetReader train(o + "/train.h5", DatasetExpect{28, 1, 16, tok.id_hex()});
    DatasetReader test(o + "/test.h5", DatasetExpect{28, 1, 16, tok.id_hex()});
    DatasetReader cur(o + "/curated.h5", DatasetExpect{28, 1, 16, tok.id_hex()});
    EXPECT_EQ(train.size(), 400);
    EXPECT_EQ(test.size(), 60);
    EXPECT_EQ(cur.size(), 50);
    EXPECT_EQ(train.classnames(), fashion_mnist_classnames());
    EXPECT_NE(train.creation_command().find("--noise 0.25"), std::string::npos);

    auto flags = [](const DatasetReader& r) {
        std::vector<uint8_t> c(size_t(r.size()));
        r.read_range(0, r.size(), nullptr, nullptr, nullptr, c.data());
        return c;
    };
    const auto tf = flags(train);
    EXPECT_EQ(std::count(tf.begin(), tf.end(), 1), 100);  // exactly round(0.25 * 400)
    for (const auto* r : {&test, &cur}) {
        const auto f = flags(*r);
        EXPECT_EQ(std::count(f.begin(), f.end(), 1), 0);
    }
    // Tokens are the captions' encodings; clean captions name their image's class,
    // and most replaced ones do not (another image, 9 other classes).
    std::vector<int32_t> tokens(400 * 16), labels(400);
    train.read_range(0, 400, nullptr, tokens.data(), labels.data(), nullptr);
    const auto caps = train.read_captions(0, 400);
    int noisy_wrong_class = 0;
    for (size_t i = 0; i < 400; ++i) {
        // (decode puts spaces around punctuation, as CLIP's does: compare without them)
        auto squeeze = [](std::string t) { t.erase(std::remove(t.begin(), t.end(), ' '), t.end()); return t; };
        EXPECT_EQ(squeeze(tok.decode(std::span<const int32_t>(tokens.data() + i * 16, 16))), squeeze(caps[i]));
        std::string cls = fashion_mnist_classnames()[size_t(labels[i])];
        std::transform(cls.begin(), cls.end(), cls.begin(), ::tolower);
        const bool has = caps[i].find(cls) != std::string::npos;
        if (!tf[i]) EXPECT_TRUE(has) << caps[i];
        else noisy_wrong_class += !has;
    }
    EXPECT_GT(noisy_wrong_class, 70);

    // Same command again: refused, naming the first existing output.
    expect_error([&] { run_prep({"--source", src.path.string(), "--out", o}); }, {o + "/train.h5", "overwrite"});
    // Reusing the tokenizer gives datasets with the same tokenizer id.
    const std::string o2 = out / "prep2";
    EXPECT_EQ(run_prep({"--source", src.path.string(), "--out", o2, "--tokenizer", o + "/tokenizer.bpe", "--limit", "30"}), 0);
    DatasetReader again(o2 + "/train.h5", DatasetExpect{28, 1, 16, tok.id_hex()});
    EXPECT_EQ(again.size(), 30);
    // Bad options.
    expect_error([&] { run_prep({"--source", src.path.string(), "--out", out / "p3", "--noise", "1.5"}); }, {"--noise"});
    // An empty --tokenizer (an unset shell variable) is refused, not taken as "train one".
    expect_error([&] { run_prep({"--source", src.path.string(), "--out", out / "p5", "--tokenizer", ""}); },
                 {"--tokenizer is empty"});
    EXPECT_FALSE(fs::exists(out / "p5"));
    expect_error([&] { run_prep({"--source", out / "none", "--out", out / "p4"}); }, {"train-images-idx3-ubyte"});
}

// The library call behind `curaclip prep fashion-mnist` (prep/fashion_mnist_job.h): its
// summary is what it wrote.
TEST(Prep, FashionMnistJobSummaryDescribesTheFiles) {
    TempDir src, out;
    write_fake_split(src.path.string(), "train", 200);
    write_fake_split(src.path.string(), "t10k", 30);
    FashionMnistPrepOptions o;
    o.source = src.path.string();
    o.out = out / "p";
    o.noise = 0.1;
    o.curated = 20;
    o.command = "test";
    const FashionMnistPrepSummary s = prep_fashion_mnist(o);
    EXPECT_EQ(s.train_rows, 200);
    EXPECT_EQ(s.test_rows, 30);
    EXPECT_EQ(s.noisy, 20);  // round(0.1 * 200)
    EXPECT_EQ(s.curated_path, o.out + "/curated.h5");
    const BpeTokenizer tok = BpeTokenizer::load(s.tokenizer_path);
    EXPECT_EQ(s.tokenizer_id, tok.id_hex());
    EXPECT_EQ(s.tokenizer_vocab, tok.vocab_size());
    DatasetReader train(s.train_path, DatasetExpect{28, 1, 16, tok.id_hex()});
    const auto caps = train.read_captions(0, 3);
    std::vector<uint8_t> corrupted(3);
    train.read_range(0, 3, nullptr, nullptr, nullptr, corrupted.data());
    ASSERT_EQ(s.first_captions.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(s.first_captions[i], caps[i]);
        EXPECT_EQ(s.first_noisy[i], corrupted[i] != 0);
        EXPECT_EQ(s.first_classes[i], fashion_mnist_classnames()[i % 10]);
    }
    EXPECT_EQ(train.creation_command(), "test");
}

TEST(Prep, RealFashionMnistIfInstalled) {
    const std::string dir = kFashionMnistDir;
    if (!path_exists(dir + "/train-images-idx3-ubyte.gz") && !path_exists(dir + "/train-images-idx3-ubyte"))
        GTEST_SKIP() << "Fashion-MNIST not installed in " << dir << " (Debian package dataset-fashion-mnist)";
    TempDir out;
    EXPECT_EQ(run_prep({"--out", out / "fm", "--limit", "500", "--vocab", "800"}), 0);
    DatasetReader r(out / "fm/train.h5", DatasetExpect{28, 1, 16, ""});
    EXPECT_EQ(r.size(), 500);
    std::vector<int32_t> labels(500);
    std::vector<uint8_t> images(500 * 784);
    r.read_range(0, 500, images.data(), nullptr, labels.data(), nullptr);
    EXPECT_EQ(labels[0], 9);  // the first training image is an ankle boot
    EXPECT_EQ(labels[1], 0);  // the second a T-shirt/top
    std::set<int32_t> classes(labels.begin(), labels.end());
    EXPECT_EQ(classes.size(), 10u);
    EXPECT_GT(*std::max_element(images.begin(), images.end()), 200);
    EXPECT_NE(r.read_captions(0, 1)[0].find("ankle boot"), std::string::npos);
}

}  // namespace
}  // namespace curaclip::io
