// Dataset files for users' own data: shards written row by row
// (io/shard_writer.h), joined by a virtual dataset (io/dataset_join.h) and read
// back as one dataset; strings of every HDF5 type other tools write; token rows
// checked for end of text at load; caption normalization (src/prep/caption.h).
#include <gtest/gtest.h>
#include <hdf5.h>

#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "io/dataset_join.h"
#include "io/dataset_reader.h"
#include "io/dataset_writer.h"
#include "io/hdf5_file.h"
#include "io/shard_writer.h"
#include "prep/caption.h"
#include "tests/common/test_files.h"

namespace curaclip::io {
namespace {

using testing::expect_error;
using testing::read_file_bytes;
using testing::TempDir;
namespace fs = std::filesystem;

constexpr int kS = 4, kC = 3, kCtx = 6, kEot = 99;

// Row r of shard s: pixels and tokens that encode (s, r), captions and keys naming them.
std::vector<uint8_t> image_of(int s, int r) {
    std::vector<uint8_t> px(size_t(kS * kS * kC));
    for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t(s * 50 + r * 3 + int(i));
    return px;
}
std::vector<int32_t> tokens_of(int s, int r) { return {98, 10 + s, 20 + r % 70, kEot, 0, 0}; }

void write_shard(const std::string& path, int s, int rows, bool finish = true) {
    ShardSpec spec;
    spec.image_size = kS;
    spec.channels = kC;
    spec.context_length = kCtx;
    spec.labels = true;
    spec.image_ids = true;
    ShardWriter w(path, spec);
    for (int r = 0; r < rows; ++r)
        w.append(image_of(s, r).data(), tokens_of(s, r).data(), "caption " + std::to_string(s) + "/" + std::to_string(r),
                 "key" + std::to_string(s) + "_" + std::to_string(r), s * 100 + r, int64_t(r / 2));
    w.set_attr("tokenizer_id", std::string("00000000000000aa"));
    w.set_attr("eot_id", int64_t(kEot));
    if (finish) w.finish();
}

JoinAttributes join_attrs() {
    JoinAttributes a;
    a.strings = {{"source", "test"}, {"creation_command", "none"}};
    a.integers = {{"eot_id", kEot}, {"sot_id", 98}};
    a.classnames = {"zero", "one"};
    return a;
}

TEST(PrepDatasetFiles, ShardsJoinIntoOneDataset) {
    TempDir d;
    fs::create_directories(d.path / "x-shards");
    // 300 rows: more than one 256-row write block; an empty shard in the middle.
    const std::vector<int> rows = {300, 0, 7};
    std::vector<JoinShard> shards;
    for (int s = 0; s < 3; ++s) {
        write_shard(d / ("x-shards/p" + std::to_string(s) + ".h5"), s, rows[size_t(s)]);
        shards.push_back({"x-shards/p" + std::to_string(s) + ".h5", "input " + std::to_string(s)});
    }
    EXPECT_EQ(join_shards(d / "x.h5", shards, join_attrs()), 307);
    // Moving the whole folder keeps it readable (shard paths are relative).
    fs::rename(d.path, d.path.string() + "_moved");
    fs::rename(d.path.string() + "_moved", d.path);

    DatasetReader r(d / "x.h5", DatasetExpect{kS, kC, kCtx, "00000000000000aa"});
    ASSERT_EQ(r.size(), 307);
    EXPECT_EQ(r.eot_id(), kEot);
    EXPECT_TRUE(r.has_labels());
    EXPECT_TRUE(r.has_image_ids());
    EXPECT_EQ(r.classnames(), (std::vector<std::string>{"zero", "one"}));
    EXPECT_EQ(r.source(), "test");
    // Every row lands where the shard order puts it.
    std::vector<int64_t> idx(307);
    std::iota(idx.begin(), idx.end(), 0);
    std::vector<uint8_t> im(idx.size() * kS * kS * kC);
    std::vector<int32_t> tk(idx.size() * kCtx), lb(idx.size());
    r.read_rows(idx.data(), idx.size(), im.data(), tk.data(), lb.data(), nullptr);
    const std::vector<std::string> caps = r.read_captions(0, 307);
    const std::vector<int64_t> ids = r.read_image_ids(0, 307);
    for (int64_t i = 0; i < 307; ++i) {
        const int s = i < 300 ? 0 : 2, row = i < 300 ? int(i) : int(i - 300);
        ASSERT_EQ(std::vector<uint8_t>(im.begin() + i * kS * kS * kC, im.begin() + (i + 1) * kS * kS * kC),
                  image_of(s, row)) << "row " << i;
        ASSERT_EQ(std::vector<int32_t>(tk.begin() + i * kCtx, tk.begin() + (i + 1) * kCtx), tokens_of(s, row));
        ASSERT_EQ(lb[size_t(i)], s * 100 + row);
        ASSERT_EQ(caps[size_t(i)], "caption " + std::to_string(s) + "/" + std::to_string(row));
        ASSERT_EQ(ids[size_t(i)], row / 2);
    }
    H5File f(d / "x.h5", H5File::Mode::read);
    EXPECT_EQ(h5_read_strings(f.id(), "x.h5", "/keys", 305, 2), (std::vector<std::string>{"key2_5", "key2_6"}));
    EXPECT_EQ(h5_read_strings(f.id(), "x.h5", "/shards/inputs"),
              (std::vector<std::string>{"input 0", "input 1", "input 2"}));
    EXPECT_EQ(f.attr_i64("/", "shards"), 3);
}

TEST(PrepDatasetFiles, SameRowsGiveSameBytes) {
    TempDir d;
    write_shard(d / "a.h5", 1, 40);
    write_shard(d / "b.h5", 1, 40);
    EXPECT_EQ(read_file_bytes(d / "a.h5"), read_file_bytes(d / "b.h5"));
    fs::create_directories(d.path / "j1");
    fs::create_directories(d.path / "j2");
    fs::copy(d / "a.h5", d / "j1/a.h5");
    fs::copy(d / "a.h5", d / "j2/a.h5");
    join_shards(d / "j1/x.h5", {{"a.h5", "in"}}, join_attrs());
    join_shards(d / "j2/x.h5", {{"a.h5", "in"}}, join_attrs());
    EXPECT_EQ(read_file_bytes(d / "j1/x.h5"), read_file_bytes(d / "j2/x.h5"));
}

TEST(PrepDatasetFiles, NothingOverwrittenNothingLeftBehind) {
    TempDir d;
    write_shard(d / "a.h5", 0, 3);
    const std::string before = read_file_bytes(d / "a.h5");
    expect_error([&] { write_shard(d / "a.h5", 1, 3); }, {"refusing to overwrite", "a.h5"});
    EXPECT_EQ(read_file_bytes(d / "a.h5"), before);
    // A writer dropped before finish() (an error mid-shard) leaves neither file nor .tmp.
    write_shard(d / "b.h5", 0, 3, /*finish=*/false);
    EXPECT_FALSE(fs::exists(d / "b.h5"));
    EXPECT_FALSE(fs::exists(d / "b.h5.tmp"));
    join_shards(d / "x.h5", {{"a.h5", "in"}}, join_attrs());
    const std::string joined = read_file_bytes(d / "x.h5");
    expect_error([&] { join_shards(d / "x.h5", {{"a.h5", "in"}}, join_attrs()); }, {"refusing to overwrite", "x.h5"});
    EXPECT_EQ(read_file_bytes(d / "x.h5"), joined);
    // Shards that disagree are named.
    {
        ShardSpec spec;
        spec.image_size = kS + 1;
        spec.channels = kC;
        spec.context_length = kCtx;
        spec.labels = spec.image_ids = true;
        ShardWriter w(d / "other.h5", spec);
        w.set_attr("tokenizer_id", std::string("00000000000000aa"));
        w.finish();
    }
    expect_error([&] { join_shards(d / "y.h5", {{"a.h5", "in"}, {"other.h5", "in2"}}, join_attrs()); },
                 {"other.h5", "does not match", "a.h5"});
    EXPECT_FALSE(fs::exists(d / "y.h5"));
    EXPECT_FALSE(fs::exists(d / "y.h5.tmp"));
}

TEST(PrepDatasetFiles, MissingShardIsAnErrorNotZeros) {
    TempDir d;
    write_shard(d / "a.h5", 0, 3);
    write_shard(d / "b.h5", 1, 3);
    join_shards(d / "x.h5", {{"a.h5", "in a"}, {"b.h5", "in b"}}, join_attrs());
    fs::remove(d / "b.h5");
    expect_error([&] { DatasetReader r(d / "x.h5"); }, {"x.h5", "1 of its 2 shard files are missing", "b.h5"});
}

// ---- strings as other tools write them -------------------------------------------------

// Rewrites string attribute `name` on "/" (fixed size attr_size, 0 = variable
// length) and string dataset `ds` (fixed size ds_size) with the given character set
// and padding, as another tool (h5py, numpy, Fortran) would write them.
void rewrite_strings(const std::string& path, const std::string& name, const std::string& value, size_t attr_size,
                     const std::string& ds, const std::vector<std::string>& values, size_t ds_size, H5T_cset_t cset,
                     H5T_str_t pad, bool attr_as_array) {
    std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
    H5Id f(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
    ASSERT_TRUE(f.valid());
    auto type = [&](size_t size) {
        H5Id t(H5Tcopy(H5T_C_S1));
        H5Tset_size(t.get(), size ? size : H5T_VARIABLE);
        H5Tset_cset(t.get(), cset);
        H5Tset_strpad(t.get(), pad);
        return t;
    };
    auto pack = [&](const std::vector<std::string>& v, size_t size) {
        std::vector<char> buf(size * v.size(), pad == H5T_STR_SPACEPAD ? ' ' : '\0');
        for (size_t i = 0; i < v.size(); ++i) std::copy(v[i].begin(), v[i].end(), buf.begin() + long(i * size));
        return buf;
    };
    H5Adelete(f.get(), name.c_str());
    const hsize_t one = 1;
    H5Id at = type(attr_size);
    H5Id as(attr_as_array ? H5Screate_simple(1, &one, nullptr) : H5Screate(H5S_SCALAR));
    H5Id a(H5Acreate2(f.get(), name.c_str(), at.get(), as.get(), H5P_DEFAULT, H5P_DEFAULT));
    const char* p = value.c_str();
    ASSERT_GE(attr_size ? H5Awrite(a.get(), at.get(), pack({value}, attr_size).data()) : H5Awrite(a.get(), at.get(), &p),
              0);
    H5Ldelete(f.get(), ds.c_str(), H5P_DEFAULT);
    const hsize_t n = values.size();
    H5Id dt = type(ds_size);
    H5Id space(H5Screate_simple(1, &n, nullptr));
    H5Id d(H5Dcreate2(f.get(), ds.c_str(), dt.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    std::vector<const char*> ptrs;
    for (const auto& v : values) ptrs.push_back(v.c_str());
    ASSERT_GE(ds_size ? H5Dwrite(d.get(), dt.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, pack(values, ds_size).data())
                      : H5Dwrite(d.get(), dt.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()),
              0);
}

TEST(PrepDatasetFiles, StringsOfEveryHdf5Type) {
    // "exactly8" fills an 8-byte fixed string with no terminator; the 16-character
    // tokenizer id fills a 16-byte one.
    const std::vector<std::string> caps = {"a caf\xc3\xa9", "b", "exactly8"};
    const std::string id = "0123456789abcdef";
    struct Case {
        const char* what;
        size_t attr_size, ds_size;
        H5T_cset_t cset;
        H5T_str_t pad;
        bool array;
    };
    const std::vector<Case> cases = {
        {"variable ASCII", 0, 0, H5T_CSET_ASCII, H5T_STR_NULLTERM, false},
        {"variable UTF-8 (h5py str)", 0, 0, H5T_CSET_UTF8, H5T_STR_NULLTERM, false},
        {"variable UTF-8 in a 1-element array", 0, 0, H5T_CSET_UTF8, H5T_STR_NULLTERM, true},
        {"fixed null-terminated ASCII", 17, 9, H5T_CSET_ASCII, H5T_STR_NULLTERM, false},
        {"fixed null-padded ASCII (numpy bytes)", 16, 9, H5T_CSET_ASCII, H5T_STR_NULLPAD, false},
        {"fixed null-padded, full length", 16, 8, H5T_CSET_UTF8, H5T_STR_NULLPAD, true},
        {"fixed space-padded ASCII (Fortran)", 20, 12, H5T_CSET_ASCII, H5T_STR_SPACEPAD, false},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.what);
        TempDir d;
        DatasetContents dc;
        dc.count = 3;
        dc.image_size = 2;
        dc.channels = 1;
        dc.context_length = 4;
        dc.images.assign(12, 7);
        dc.tokens = {1, 5, 9, 0, 1, 6, 9, 0, 1, 7, 9, 0};
        dc.captions = {"x", "y", "z"};
        write_dataset(d / "ds.h5", dc, DatasetAttributes{id, "src", "cmd", {}, {}});
        std::vector<std::string> want = caps;
        if (c.ds_size == 8) want[0] = "a cafe";  // 8 bytes cannot hold the UTF-8 one plus ...
        rewrite_strings(d / "ds.h5", "tokenizer_id", id, c.attr_size, "/captions", want, c.ds_size, c.cset, c.pad,
                        c.array);
        DatasetReader r(d / "ds.h5", DatasetExpect{2, 1, 4, id});
        EXPECT_EQ(r.tokenizer_id(), id);
        EXPECT_EQ(r.read_captions(0, 3), want);
    }
}

TEST(PrepDatasetFiles, TokenRowsWithoutEndOfTextAreRefused) {
    TempDir d;
    DatasetContents dc;
    dc.count = 3;
    dc.image_size = 2;
    dc.channels = 1;
    dc.context_length = 4;
    dc.images.assign(12, 7);
    dc.tokens = {1, 5, 9, 0, 1, 6, 7, 8, 1, 7, 9, 0};  // row 1 lost its end of text (9)
    dc.captions = {"x", "y", "z"};
    DatasetAttributes a{"0123456789abcdef", "src", "cmd", {}, {{"eot_id", 9}}};
    write_dataset(d / "ds.h5", dc, a);
    DatasetReader r(d / "ds.h5");
    std::vector<int32_t> tk(12);
    const int64_t good[] = {0, 2};
    r.read_rows(good, 2, nullptr, tk.data(), nullptr, nullptr);
    expect_error([&] { r.read_range(0, 3, nullptr, tk.data(), nullptr, nullptr); },
                 {"ds.h5", "/tokens row 1", "no end-of-text token (id 9)"});
    // Without the attribute, the consumer's tokenizer says what end of text is.
    dc.tokens[7] = 12;  // also an id above end of text
    write_dataset(d / "ds2.h5", dc, DatasetAttributes{"0123456789abcdef", "src", "cmd", {}, {}});
    DatasetReader unchecked(d / "ds2.h5");
    unchecked.read_range(0, 3, nullptr, tk.data(), nullptr, nullptr);
    DatasetReader checked(d / "ds2.h5", DatasetExpect{-1, -1, -1, "", 9});
    expect_error([&] { checked.read_range(0, 3, nullptr, tk.data(), nullptr, nullptr); },
                 {"/tokens row 1", "id 12", "outside [0, 9]"});
    expect_error([&] { DatasetReader r2(d / "ds.h5", DatasetExpect{-1, -1, -1, "", 10}); },
                 {"ds.h5", "eot_id", "9", "10"});
}

}  // namespace
}  // namespace curaclip::io

namespace curaclip::prep {
namespace {

TEST(PrepCaptions, NormalizedOrRejected) {
    // NFD e + combining acute -> NFC é; outer white space trimmed, inner kept; NUL -> space.
    EXPECT_EQ(normalize_caption("  re\xcc\x81sume\xcc\x81 \t\n").text, "r\xc3\xa9sum\xc3\xa9");
    EXPECT_EQ(normalize_caption(std::string("a\0b", 3)).text, "a b");
    EXPECT_EQ(normalize_caption("two  spaces").text, "two  spaces");
    const CaptionResult bad = normalize_caption("caf\xe9 au lait");  // Latin-1, not UTF-8
    ASSERT_TRUE(bad.reject);
    EXPECT_EQ(*bad.reject, RejectReason::invalid_utf8);
    EXPECT_NE(bad.detail.find("byte 3"), std::string::npos) << bad.detail;
    EXPECT_EQ(*normalize_caption("\xed\xa0\x80").reject, RejectReason::invalid_utf8);  // a UTF-16 surrogate
    EXPECT_EQ(*normalize_caption("\xc0\xaf").reject, RejectReason::invalid_utf8);      // overlong '/'
    EXPECT_EQ(*normalize_caption("").reject, RejectReason::empty_caption);
    EXPECT_EQ(*normalize_caption(" \t\r\n ").reject, RejectReason::empty_caption);
}

}  // namespace
}  // namespace curaclip::prep
