// The input sources of `curaclip prep <source>` (src/prep/source.h): webdataset
// tar shards (written here with libarchive, including img2dataset's layout),
// CSV/TSV/JSONL index files and ImageNet-style class folders. Every emitted
// sample's key, caption, label, image bytes, order and reject reason is checked.
#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <clocale>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/check.h"
#include "prep/class_folder_source.h"
#include "prep/index_file_source.h"
#include "prep/input_paths.h"
#include "prep/source.h"
#include "prep/webdataset_source.h"
#include "tests/common/prep_inputs.h"
#include "tests/common/test_files.h"

namespace curaclip::prep {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing::write_tar;
using Member = testing::TarMember;

template <typename F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << "no Error thrown";
    return {};
}

#define EXPECT_HAS(haystack, needle) \
    EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "'" << (needle) << "' not in: " << (haystack)

void write_file(const std::string& path, const std::string& bytes) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream out(path, std::ios::binary);
    out << bytes;
    CC_CHECK(out.good(), "cannot write ", path);
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// A distinct fake "image" per name: a PNG signature and some bytes (decoding is
// the job's, not the source's; the bytes only have to come back unchanged).
std::string fake_image(const std::string& tag, size_t size = 64) {
    std::string s = "\x89PNG\r\n\x1a\n" + tag;
    for (size_t i = 0; s.size() < size; ++i) s.push_back(char((i * 31 + tag.size()) & 0xFF));
    return s;
}

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

std::vector<RawSample> read_all(const Source& src, size_t u, bool captions_only = false) {
    std::vector<RawSample> out;
    src.read_unit(u, [&](RawSample&& s) { out.push_back(std::move(s)); }, captions_only);
    return out;
}

std::vector<RawSample> read_every_unit(const Source& src, bool captions_only = false) {
    std::vector<RawSample> out;
    for (size_t u = 0; u < src.num_units(); ++u) {
        auto part = read_all(src, u, captions_only);
        out.insert(out.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
    }
    return out;
}

std::string reason(const RawSample& s) { return s.reject ? reject_reason_name(*s.reject) : "ok"; }

std::vector<std::string> keys_of(const std::vector<RawSample>& v) {
    std::vector<std::string> k;
    for (const auto& s : v) k.push_back(s.key);
    return k;
}

// img2dataset's shard: per sample key.jpg, key.txt, key.json; per shard a
// .parquet and a _stats.json beside the tar.
void write_img2dataset_shard(const TempDir& dir, int shard, int first_key, int n) {
    char name[32];
    std::snprintf(name, sizeof name, "%05d", shard);
    std::vector<Member> m;
    for (int i = 0; i < n; ++i) {
        char key[32];
        std::snprintf(key, sizeof key, "%09d", first_key + i);
        const std::string k = key;
        m.push_back({k + ".jpg", fake_image(k)});
        m.push_back({k + ".txt", "caption of " + k});
        m.push_back({k + ".json", R"({"url": "http://example.com/)" + k + R"(.jpg", "key": ")" + k +
                                      R"(", "status": "success", "caption": "json caption of )" + k + "\"}"});
    }
    write_tar(dir / ("shards/" + std::string(name) + ".tar"), m);
    write_file(dir / ("shards/" + std::string(name) + ".parquet"), "PAR1 not a tar PAR1");
    write_file(dir / ("shards/" + std::string(name) + "_stats.json"), detail::concat(R"({"count": )", n, "}"));
}

// ---------------------------------------------------------------- common

TEST(PrepSources, RejectReasonNamesAndKinds) {
    const std::vector<std::string> names = {"missing_image",  "unreadable_image", "undecodable_image",
                                            "image_too_large", "missing_caption", "empty_caption",
                                            "invalid_utf8",   "duplicate_key",   "bad_label",
                                            "bad_record",     "truncated_input"};
    ASSERT_EQ(int(names.size()), kNumRejectReasons);
    for (int r = 0; r < kNumRejectReasons; ++r) EXPECT_EQ(reject_reason_name(RejectReason(r)), names[size_t(r)]);
    EXPECT_EQ(source_kinds(), (std::vector<std::string>{"webdataset", "csv", "tsv", "jsonl", "folder"}));
    const std::string e = error_of([] { make_source("parquet", {"x"}, {}); });
    EXPECT_HAS(e, "unknown source kind 'parquet' (known: webdataset, csv, tsv, jsonl, folder)");
    EXPECT_HAS(error_of([] { make_source("csv", {"a.csv", "b.csv"}, {}); }), "prep csv takes one index file, got 2");
    EXPECT_HAS(error_of([] { make_source("folder", {}, {}); }), "prep folder takes one folder");
}

TEST(PrepSources, BraceExpansion) {
    EXPECT_EQ(expand_braces("s/{00000..00003}.tar"),
              (std::vector<std::string>{"s/00000.tar", "s/00001.tar", "s/00002.tar", "s/00003.tar"}));
    EXPECT_EQ(expand_braces("{8..11}"), (std::vector<std::string>{"8", "9", "10", "11"}));
    EXPECT_EQ(expand_braces("{09..11}"), (std::vector<std::string>{"09", "10", "11"}));
    EXPECT_EQ(expand_braces("{0..2}"), (std::vector<std::string>{"0", "1", "2"}));  // "0" is no padding
    EXPECT_EQ(expand_braces("{1..5..2}"), (std::vector<std::string>{"1", "3", "5"}));
    EXPECT_EQ(expand_braces("{3..1}"), (std::vector<std::string>{"3", "2", "1"}));
    EXPECT_EQ(expand_braces("{1..7..-3}"), (std::vector<std::string>{"1", "4", "7"}));  // step sign ignored
    EXPECT_EQ(expand_braces("{-1..01}"), (std::vector<std::string>{"-1", "00", "01"}));
    EXPECT_EQ(expand_braces("{1..}"), (std::vector<std::string>{"{1..}"}));  // not a range: literal
    EXPECT_EQ(expand_braces("{a,b}{1,2}"), (std::vector<std::string>{"a1", "a2", "b1", "b2"}));
    EXPECT_EQ(expand_braces("x{a,b{1,2}}.tar"), (std::vector<std::string>{"xa.tar", "xb1.tar", "xb2.tar"}));
    EXPECT_EQ(expand_braces("{x}.tar"), (std::vector<std::string>{"{x}.tar"}));
    EXPECT_EQ(expand_braces("plain.tar"), (std::vector<std::string>{"plain.tar"}));
    EXPECT_HAS(error_of([] { expand_braces("a{1,2"); }), "unbalanced braces in 'a{1,2'");
    EXPECT_HAS(error_of([] { expand_braces("{0..99999999999}.tar"); }), "gives more than 10000000 names");
}

TEST(PrepSources, LabelsAndClassnamesFile) {
    std::string why;
    EXPECT_EQ(parse_label(" 7\n", &why), 7);
    EXPECT_EQ(parse_label("2147483647", &why), 2147483647);
    EXPECT_FALSE(parse_label("2147483648", &why));
    EXPECT_HAS(why, "is >= 2^31");
    EXPECT_FALSE(parse_label("-1", &why));
    EXPECT_HAS(why, "label '-1' is negative");
    EXPECT_FALSE(parse_label("3.5", &why));
    EXPECT_EQ(why, "label '3.5' is not an integer");
    EXPECT_FALSE(parse_label("  ", &why));
    EXPECT_EQ(why, "label '' is empty");

    TempDir dir;
    write_file(dir / "names.txt", "\xEF\xBB\xBFtench\r\ngoldfish \n\n  great white shark\n");
    EXPECT_EQ(read_classnames_file(dir / "names.txt"),
              (std::vector<std::string>{"tench", "goldfish", "great white shark"}));
    write_file(dir / "blank.txt", "\n \n");
    EXPECT_HAS(error_of([&] { read_classnames_file(dir / "blank.txt"); }), "names no class");
    EXPECT_HAS(error_of([&] { read_classnames_file(dir / "none.txt"); }), "cannot read classnames file");
}

// ---------------------------------------------------------------- webdataset

TEST(PrepSources, WebDatasetNameSplitMatchesBasePlusExt) {
    auto split = [](const std::string& n) {
        auto r = split_webdataset_name(n);
        return r ? r->key + " | " + r->ext : std::string("(skipped)");
    };
    EXPECT_EQ(split("000000000.jpg"), "000000000 | jpg");
    EXPECT_EQ(split("a.b/c.jpg"), "a.b/c | jpg");        // dots in directories stay in the key
    EXPECT_EQ(split("x.seg.jpg"), "x | seg.jpg");        // everything after the first dot
    EXPECT_EQ(split("dir/Sub/K.Json.JPG"), "dir/Sub/K | json.jpg");  // extension lower-cased, key not
    EXPECT_EQ(split("./000.jpg"), "./000 | jpg");
    EXPECT_EQ(split("k."), "k | ");
    EXPECT_EQ(split("README"), "(skipped)");             // base_plus_ext: no match
    EXPECT_EQ(split("a.b/README"), "(skipped)");
    EXPECT_EQ(split("d/.hidden.jpg"), "(skipped)");
    EXPECT_EQ(split("__key__.txt"), "(skipped)");
    EXPECT_EQ(split("_stats.json"), "(skipped)");
}

TEST(PrepSources, WebDatasetImg2DatasetLayout) {
    TempDir dir;
    write_img2dataset_shard(dir, 0, 0, 3);
    write_img2dataset_shard(dir, 1, 10000, 2);
    // A folder: only the tars become units (not .parquet, not _stats.json), sorted.
    auto src = make_source("webdataset", {dir / "shards"}, {});
    EXPECT_EQ(src->kind(), "webdataset");
    ASSERT_EQ(src->num_units(), 2u);
    EXPECT_EQ(src->unit_name(0), dir / "shards/00000.tar");
    EXPECT_EQ(src->unit_name(1), dir / "shards/00001.tar");
    EXPECT_EQ(src->describe(), "webdataset: 2 tar shards (" + (dir / "shards") + ")");
    EXPECT_TRUE(src->classnames().empty());

    const auto s0 = read_all(*src, 0);
    ASSERT_EQ(s0.size(), 3u);
    for (int i = 0; i < 3; ++i) {
        char key[16];
        std::snprintf(key, sizeof key, "%09d", i);
        const RawSample& s = s0[size_t(i)];
        EXPECT_EQ(s.key, key);
        EXPECT_EQ(s.image_name, std::string(key) + ".jpg");
        EXPECT_EQ(s.image_bytes, bytes(fake_image(key)));
        EXPECT_EQ(s.caption, "caption of " + std::string(key));  // .txt wins over .json
        EXPECT_EQ(s.label, -1);
        EXPECT_EQ(s.group, "");
        EXPECT_EQ(reason(s), "ok") << s.detail;
    }
    EXPECT_EQ(keys_of(read_all(*src, 1)), (std::vector<std::string>{"000010000", "000010001"}));
}

TEST(PrepSources, WebDatasetShardExpansion) {
    TempDir dir;
    for (int i = 0; i < 4; ++i) write_img2dataset_shard(dir, i, i * 100, 1);
    const std::string d = dir / "shards";
    auto units = [](const Source& s) {
        std::vector<std::string> v;
        for (size_t u = 0; u < s.num_units(); ++u) v.push_back(fs::path(s.unit_name(u)).filename().string());
        return v;
    };
    // Brace range (zero padding kept), in any input order, de-duplicated.
    EXPECT_EQ(units(*make_source("webdataset", {d + "/{00002..00003}.tar", d + "/00000.tar", d + "/./00002.tar"}, {})),
              (std::vector<std::string>{"00000.tar", "00002.tar", "00003.tar"}));
    EXPECT_EQ(units(*make_source("webdataset", {d + "/{00000,00003}.tar"}, {})),
              (std::vector<std::string>{"00000.tar", "00003.tar"}));
    // Globs select tars only, even "*".
    EXPECT_EQ(units(*make_source("webdataset", {d + "/*"}, {})),
              (std::vector<std::string>{"00000.tar", "00001.tar", "00002.tar", "00003.tar"}));
    EXPECT_EQ(units(*make_source("webdataset", {d + "/0000[13].tar"}, {})),
              (std::vector<std::string>{"00001.tar", "00003.tar"}));
    // A shell-expanded list: each path once, the description stays short.
    auto listed = make_source("webdataset", {d + "/00003.tar", d + "/00001.tar", d + "/00000.tar", d + "/00001.tar"}, {});
    EXPECT_EQ(units(*listed), (std::vector<std::string>{"00000.tar", "00001.tar", "00003.tar"}));
    EXPECT_EQ(listed->describe(), "webdataset: 3 tar shards (" + d + "/00003.tar " + d + "/00001.tar " + d +
                                      "/00000.tar ... (4 inputs))");

    // Missing shards: an Error listing them, unless allowed.
    const std::string e = error_of([&] { make_source("webdataset", {d + "/{00000..00005}.tar"}, {}); });
    EXPECT_HAS(e, "webdataset: 2 of 6 tar shards not found: " + d + "/00004.tar, " + d + "/00005.tar");
    EXPECT_HAS(e, "--allow-missing-shards");
    const std::string many = error_of([&] { make_source("webdataset", {d + "/{00000..00099}.tar"}, {}); });
    EXPECT_HAS(many, "96 of 100 tar shards not found: " + d + "/00004.tar, ");
    EXPECT_HAS(many, d + "/00013.tar, ... and 86 more");
    EXPECT_EQ(many.find("00014.tar"), std::string::npos);
    SourceOptions allow;
    allow.allow_missing_shards = true;
    ::testing::internal::CaptureStderr();
    auto src = make_source("webdataset", {d + "/{00000..00005}.tar"}, allow);
    const std::string warned = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(src->num_units(), 4u);
    EXPECT_HAS(warned, "skipping 2 of 6 tar shards that do not exist: " + d + "/00004.tar, " + d + "/00005.tar");

    // Nothing at all.
    EXPECT_HAS(error_of([&] { make_source("webdataset", {d + "/*.tgz"}, {}); }),
               "webdataset: no tar shards match '" + d + "/*.tgz'");
    fs::create_directories(dir / "empty");
    EXPECT_HAS(error_of([&] { make_source("webdataset", {dir / "empty"}, {}); }), "no tar shards match");
    EXPECT_HAS(error_of([&] { make_source("webdataset", {}, {}); }), "no tar shards given");

    // A shard deleted after the list was made: reading it is an Error naming it.
    auto again = make_source("webdataset", {d}, {});
    fs::remove(d + "/00001.tar");
    EXPECT_HAS(error_of([&] { read_all(*again, 1); }), "cannot open tar shard '" + d + "/00001.tar'");
}

TEST(PrepSources, WebDatasetGroupingAndRejects) {
    TempDir dir;
    const std::string tar = dir / "mixed.tar";
    write_tar(tar, {
                       {"a.b", "", true},                             // directory: skipped
                       {"a.b/c.jpg", fake_image("c")},                 // key "a.b/c"
                       {"a.b/c.txt", "dots in the folder"},
                       {"x.seg.jpg", fake_image("x")},                // ext "seg.jpg": not an image
                       {"x.txt", "no image here"},
                       {"k1.png", fake_image("k1")},
                       {"README", "no extension: skipped, does not end k1"},
                       {".hidden.jpg", "skipped"},
                       {"k1.json", R"({"caption": "from json", "url": "u"})"},
                       {"k2.webp", fake_image("k2")},
                       {"k2.json", R"({"text": "no caption field"})"},
                       {"k3.jpeg", fake_image("k3")},
                       {"k3.json", R"({"caption": 5})"},
                       {"k4.JPG", fake_image("k4")},
                       {"k4.txt", "labelled"},
                       {"k4.cls", " 7\n"},
                       {"k5.jpg", fake_image("k5")},
                       {"k5.txt", "bad label"},
                       {"k5.cls", "seven"},
                       {"k1.jpg", fake_image("k1 again")},            // key seen before: duplicate
                       {"k1.txt", "again"},
                       {"k6.txt", "caption only"},
                       {"k7.jpg", fake_image("k7")},                  // image only
                       {"k8.jpg", fake_image("k8")},
                       {"k8.png", fake_image("k8 second image")},    // second image ignored
                       {"k8.txt", "two images"},
                       {"k9.jpg", fake_image("k9")},
                       {"k9.txt", "first"},
                       {"k9.txt", "second"},                          // webdataset: duplicate file name
                       {"k10.jpg", fake_image("k10")},
                       {"k10.txt", "txt wins"},
                       {"k10.json", "{not json"},                     // not needed, not parsed
                       {"k11.jpg", fake_image("k11")},
                       {"k11.json", "{not json"},
                       {"k12.jpg", fake_image("k12")},
                       {"k12.cls", "3"},
                       {"k12.txt", "\xff\xfe raw bytes \r\n kept"},
                   });
    auto src = make_source("webdataset", {tar}, {});
    const auto s = read_all(*src, 0);
    ASSERT_EQ(s.size(), 15u);
    EXPECT_EQ(keys_of(s), (std::vector<std::string>{"a.b/c", "x", "k1", "k2", "k3", "k4", "k5", "k1", "k6", "k7",
                                                    "k8", "k9", "k10", "k11", "k12"}));
    std::vector<std::string> reasons;
    for (const auto& x : s) reasons.push_back(reason(x));
    EXPECT_EQ(reasons, (std::vector<std::string>{"ok", "missing_image", "ok", "missing_caption", "missing_caption",
                                                 "ok", "bad_label", "duplicate_key", "missing_image",
                                                 "missing_caption", "ok", "duplicate_key", "ok", "bad_record", "ok"}));
    EXPECT_EQ(s[0].caption, "dots in the folder");
    EXPECT_EQ(s[0].image_name, "a.b/c.jpg");
    EXPECT_EQ(s[0].image_bytes, bytes(fake_image("c")));
    EXPECT_EQ(s[1].detail, "no .jpg/.jpeg/.png/.webp member for key 'x'");
    EXPECT_EQ(s[2].caption, "from json");
    EXPECT_EQ(s[2].image_name, "k1.png");
    EXPECT_EQ(s[2].image_bytes, bytes(fake_image("k1")));
    EXPECT_HAS(s[3].detail, "k2.json has no field 'caption'");
    EXPECT_EQ(s[4].detail, "k3.json: field 'caption' is number, not a string");
    EXPECT_EQ(s[5].label, 7);
    EXPECT_EQ(s[5].caption, "labelled");
    EXPECT_EQ(s[5].image_name, "k4.JPG");
    EXPECT_EQ(s[6].detail, "k5.cls: label 'seven' is not an integer");
    EXPECT_EQ(s[7].detail, "key 'k1' appears earlier in this shard");
    EXPECT_EQ(s[9].detail, "no .txt or .json member for key 'k7'");
    EXPECT_EQ(s[10].image_name, "k8.jpg");
    EXPECT_EQ(s[10].image_bytes, bytes(fake_image("k8")));
    EXPECT_EQ(s[11].detail, "member 'k9.txt' repeats an extension of key 'k9'");
    EXPECT_EQ(s[12].caption, "txt wins");
    EXPECT_EQ(s[13].detail, "k11.json is not valid JSON");
    EXPECT_EQ(s[14].caption, "\xff\xfe raw bytes \r\n kept");
    EXPECT_EQ(s[14].label, 3);
    for (size_t i : {1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13}) EXPECT_EQ(s[i].label, -1) << i;

    // Another JSON field as the caption (--caption-key).
    SourceOptions opt;
    opt.caption_key = "text";
    const auto t = read_all(*make_source("webdataset", {tar}, opt), 0);
    EXPECT_EQ(reason(t[3]), "ok");
    EXPECT_EQ(t[3].caption, "no caption field");
    EXPECT_EQ(reason(t[2]), "missing_caption");  // k1.json has no "text"

    // Captions only: image data skipped, everything else the same.
    const auto c = read_all(*src, 0, /*captions_only=*/true);
    ASSERT_EQ(c.size(), s.size());
    for (size_t i = 0; i < c.size(); ++i) {
        EXPECT_TRUE(c[i].image_bytes.empty()) << i;
        EXPECT_EQ(c[i].key, s[i].key);
        EXPECT_EQ(c[i].caption, s[i].caption);
        EXPECT_EQ(c[i].label, s[i].label);
        EXPECT_EQ(reason(c[i]), reason(s[i]));
    }
}

TEST(PrepSources, WebDatasetUstarPaxAndClassnames) {
    TempDir dir;
    write_tar(dir / "u.tar", {{"0.jpg", fake_image("0")}, {"0.cls", "1"}, {"0.txt", "zero"}}, /*ustar=*/true);
    // Names over ustar's 100 bytes and non-ASCII need pax headers.
    // (libarchive 3.6's pax writer needs the name in the locale's charset: written
    // under C.UTF-8, read back under the C locale tests run in.)
    const std::string deep = std::string(120, 'd') + "/\xc3\xa9t\xc3\xa9.2024/sample";
    const std::string old_locale = std::setlocale(LC_CTYPE, nullptr);
    ASSERT_NE(std::setlocale(LC_CTYPE, "C.UTF-8"), nullptr);
    write_tar(dir / "pax.tar", {{deep + ".webp", fake_image("deep")}, {deep + ".txt", "long name"}});
    std::setlocale(LC_CTYPE, old_locale.c_str());
    const auto p = read_all(*make_source("webdataset", {dir / "pax.tar"}, {}), 0);
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].key, deep);
    EXPECT_EQ(p[0].image_name, deep + ".webp");
    EXPECT_EQ(p[0].caption, "long name");
    EXPECT_EQ(p[0].image_bytes, bytes(fake_image("deep")));
    write_file(dir / "names.txt", "cat\ndog\n");
    SourceOptions opt;
    opt.classnames_file = dir / "names.txt";
    auto src = make_source("webdataset", {dir / "u.tar"}, opt);
    EXPECT_EQ(src->classnames(), (std::vector<std::string>{"cat", "dog"}));
    const auto s = read_all(*src, 0);
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].label, 1);
    EXPECT_EQ(s[0].caption, "zero");
}

// Writes 3 samples whose images are 5000 bytes, returns the tar's bytes and,
// per member, the offset of its header.
std::string three_sample_tar(const TempDir& dir, std::vector<size_t>* header_at) {
    std::vector<Member> m;
    for (int i = 0; i < 3; ++i) {
        const std::string k = detail::concat("s", i);
        m.push_back({k + ".jpg", fake_image(k, 5000)});
        m.push_back({k + ".txt", "caption " + k});
    }
    write_tar(dir / "full.tar", m, /*ustar=*/true);
    // ustar: a 512-byte header, then the data padded to 512.
    size_t at = 0;
    for (const auto& x : m) {
        header_at->push_back(at);
        at += 512 + (x.data.size() + 511) / 512 * 512;
    }
    return read_file(dir / "full.tar");
}

TEST(PrepSources, WebDatasetTruncatedShard) {
    TempDir dir;
    std::vector<size_t> h;
    const std::string full = three_sample_tar(dir, &h);
    ASSERT_EQ(full.substr(h[2] + 257, 5), "ustar");  // s1.jpg's header where expected

    // Cut inside s1.jpg's data: s0 complete, s1 truncated, nothing after.
    write_file(dir / "cut_data.tar", full.substr(0, h[2] + 512 + 2000));
    auto src = make_source("webdataset", {dir / "cut_data.tar"}, {});
    auto s = read_all(*src, 0);
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(s[0].key, "s0");
    EXPECT_EQ(reason(s[0]), "ok");
    EXPECT_EQ(s[0].image_bytes, bytes(fake_image("s0", 5000)));
    EXPECT_EQ(s[1].key, "s1");
    EXPECT_EQ(reason(s[1]), "truncated_input");
    EXPECT_HAS(s[1].detail, dir / "cut_data.tar");
    EXPECT_HAS(s[1].detail, "runcated");  // libarchive: "Truncated tar archive..."
    EXPECT_TRUE(s[1].image_bytes.empty());

    // Cut inside s2.jpg's header: s1 was being read (its last member done, but
    // the next header might have continued it): s1 truncated.
    write_file(dir / "cut_header.tar", full.substr(0, h[4] + 100));
    s = read_all(*make_source("webdataset", {dir / "cut_header.tar"}, {}), 0);
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(reason(s[0]), "ok");
    EXPECT_EQ(s[1].key, "s1");
    EXPECT_EQ(reason(s[1]), "truncated_input");

    // Captions only reads the same way.
    s = read_all(*src, 0, true);
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(reason(s[1]), "truncated_input");

    // The whole file intact: 3 samples.
    EXPECT_EQ(read_all(*make_source("webdataset", {dir / "full.tar"}, {}), 0).size(), 3u);
}

TEST(PrepSources, WebDatasetNotATar) {
    TempDir dir;
    write_file(dir / "shard.tar", "this is not a tar file, just some text that is long enough. " + std::string(2000, 'x'));
    auto src = make_source("webdataset", {dir / "shard.tar"}, {});
    const std::string e = error_of([&] { read_all(*src, 0); });
    EXPECT_HAS(e, "webdataset: '" + (dir / "shard.tar") + "' is not a tar archive");
    write_file(dir / "empty.tar", "");
    EXPECT_HAS(error_of([&] { read_all(*make_source("webdataset", {dir / "empty.tar"}, {}), 0); }),
               "is not a tar archive");
    // An empty but valid tar: no samples, no error.
    write_tar(dir / "nothing.tar", {});
    EXPECT_TRUE(read_all(*make_source("webdataset", {dir / "nothing.tar"}, {}), 0).empty());
}

// ---------------------------------------------------------------- index files

TEST(PrepSources, CsvQuotedFieldsBomAndCrLf) {
    TempDir dir;
    write_file(dir / "data/img/a.jpg", fake_image("a"));
    write_file(dir / "data/img/b.jpg", fake_image("b"));
    write_file(dir / "abs.jpg", fake_image("abs"));
    const std::string csv = "\xEF\xBB\xBF"
                            "filepath,title,extra\r\n"
                            "img/a.jpg,\"a cat, sitting\",1\r\n"
                            "img/b.jpg,\"line one\nline two\",2\r\n"
                            "\r\n"
                            "img/a.jpg,\"she said \"\"hi\"\"\",3\r\n"
                            "img/missing.jpg, spaces kept ,4\r\n" +
                            (dir / "abs.jpg") + ",absolute,5";  // no line end at the end
    write_file(dir / "data/index.csv", csv);
    auto src = make_source("csv", {dir / "data/index.csv"}, {});
    EXPECT_EQ(src->kind(), "csv");
    EXPECT_EQ(src->describe(), "csv: " + (dir / "data/index.csv") +
                                   " (5 rows, image column 'filepath', caption column 'title', images under " +
                                   (dir / "data") + ")");
    ASSERT_EQ(src->num_units(), 1u);
    EXPECT_EQ(src->unit_name(0), "index.csv rows 0-4");
    EXPECT_EQ(static_cast<const IndexFileSource&>(*src).columns(),
              (std::vector<std::string>{"filepath", "title", "extra"}));
    const auto s = read_all(*src, 0);
    ASSERT_EQ(s.size(), 5u);
    EXPECT_EQ(keys_of(s), (std::vector<std::string>{"img/a.jpg", "img/b.jpg", "img/a.jpg", "img/missing.jpg",
                                                    dir / "abs.jpg"}));
    EXPECT_EQ(s[0].caption, "a cat, sitting");
    EXPECT_EQ(s[1].caption, "line one\nline two");
    EXPECT_EQ(s[2].caption, "she said \"hi\"");
    EXPECT_EQ(s[3].caption, " spaces kept ");
    EXPECT_EQ(s[4].caption, "absolute");
    EXPECT_EQ(s[0].group, dir / "data/img/a.jpg");  // relative to the index file's folder
    EXPECT_EQ(s[2].group, s[0].group);              // same image, two captions
    EXPECT_EQ(s[4].group, dir / "abs.jpg");
    EXPECT_EQ(s[0].image_name, dir / "data/img/a.jpg");
    EXPECT_EQ(s[0].image_bytes, bytes(fake_image("a")));
    EXPECT_EQ(s[1].image_bytes, bytes(fake_image("b")));
    EXPECT_EQ(s[2].image_bytes, bytes(fake_image("a")));
    EXPECT_EQ(s[4].image_bytes, bytes(fake_image("abs")));
    for (size_t i : {0, 1, 2, 4}) EXPECT_EQ(reason(s[i]), "ok") << s[i].detail;
    EXPECT_EQ(reason(s[3]), "missing_image");
    EXPECT_EQ(s[3].detail, (dir / "data/img/missing.jpg") + ": No such file or directory");
    for (const auto& x : s) EXPECT_EQ(x.label, -1);
}

TEST(PrepSources, CsvMissingColumnWrongFieldCountAndLabels) {
    TempDir dir;
    write_file(dir / "index.csv", "path,caption\nx.jpg,hello\n");
    EXPECT_HAS(error_of([&] { make_source("csv", {dir / "index.csv"}, {}); }),
               (dir / "index.csv") + ": no column 'filepath' (columns: path, caption); set --csv-img-key");
    SourceOptions opt;
    opt.img_key = "path";
    EXPECT_HAS(error_of([&] { make_source("csv", {dir / "index.csv"}, opt); }),
               "no column 'title' (columns: path, caption); set --csv-caption-key");
    opt.caption_col = "caption";
    opt.label_col = "label";
    EXPECT_HAS(error_of([&] { make_source("csv", {dir / "index.csv"}, opt); }),
               "no column 'label' (columns: path, caption); set --csv-label-key");

    write_file(dir / "labels.csv", "path,caption,label\n"
                                   "a.jpg,one,3\n"
                                   "b.jpg,two\n"
                                   "c.jpg,three,x\n"
                                   "d.jpg,four,4,extra\n"
                                   "e.jpg,five, 5 \n"
                                   ",six,6\n");
    write_file(dir / "a.jpg", fake_image("a"));
    write_file(dir / "e.jpg", fake_image("e"));
    const auto s = read_all(*make_source("csv", {dir / "labels.csv"}, opt), 0);
    ASSERT_EQ(s.size(), 6u);
    EXPECT_EQ(reason(s[0]), "ok");
    EXPECT_EQ(s[0].label, 3);
    EXPECT_EQ(reason(s[1]), "bad_record");
    EXPECT_EQ(s[1].detail, (dir / "labels.csv") + " line 3 (row 1): 2 fields, the header has 3");
    EXPECT_EQ(s[1].key, "b.jpg");
    EXPECT_EQ(reason(s[2]), "bad_label");
    EXPECT_EQ(s[2].detail, (dir / "labels.csv") + " line 4 (row 2): label 'x' is not an integer");
    EXPECT_EQ(reason(s[3]), "bad_record");
    EXPECT_HAS(s[3].detail, "line 5 (row 3): 4 fields, the header has 3");
    EXPECT_EQ(reason(s[4]), "ok");
    EXPECT_EQ(s[4].label, 5);
    EXPECT_EQ(s[4].image_bytes, bytes(fake_image("e")));
    EXPECT_EQ(reason(s[5]), "missing_image");
    EXPECT_HAS(s[5].detail, "line 7 (row 5): empty 'path'");

    write_file(dir / "empty.csv", "");
    EXPECT_HAS(error_of([&] { make_source("csv", {dir / "empty.csv"}, {}); }), "empty.csv is empty");
    write_file(dir / "header.csv", "filepath,title\n\n");
    EXPECT_HAS(error_of([&] { make_source("csv", {dir / "header.csv"}, {}); }),
               "header.csv has a header (filepath, title) but no data rows");
    EXPECT_HAS(error_of([&] { make_source("csv", {dir / "nope.csv"}, {}); }),
               "cannot read index file '" + (dir / "nope.csv") + "': No such file or directory");
}

TEST(PrepSources, CsvUnitsAcrossQuotedNewlines) {
    TempDir dir;
    // 7 rows, 3 per unit -> units of 3, 3, 1; captions with newlines straddle
    // the unit boundaries, and the images live under --root.
    std::string csv = "filepath,title\n";
    for (int i = 0; i < 7; ++i) {
        csv += detail::concat("i", i, ".png,\"cap ", i, "\nsecond line, with comma\"\n");
        write_file(dir / detail::concat("images/i", i, ".png"), fake_image(std::to_string(i)));
    }
    write_file(dir / "meta/index.csv", csv);
    SourceOptions opt;
    opt.rows_per_unit = 3;
    opt.root = dir / "images";
    auto src = make_source("csv", {dir / "meta/index.csv"}, opt);
    EXPECT_EQ(static_cast<const IndexFileSource&>(*src).num_rows(), 7);
    ASSERT_EQ(src->num_units(), 3u);
    EXPECT_EQ(src->unit_name(0), "index.csv rows 0-2");
    EXPECT_EQ(src->unit_name(1), "index.csv rows 3-5");
    EXPECT_EQ(src->unit_name(2), "index.csv rows 6-6");
    const std::vector<size_t> sizes = {3, 3, 1};
    int row = 0;
    for (size_t u = 0; u < 3; ++u) {
        const auto s = read_all(*src, u);
        ASSERT_EQ(s.size(), sizes[u]);
        for (const auto& x : s) {
            EXPECT_EQ(x.key, detail::concat("i", row, ".png"));
            EXPECT_EQ(x.caption, detail::concat("cap ", row, "\nsecond line, with comma"));
            EXPECT_EQ(x.image_bytes, bytes(fake_image(std::to_string(row))));
            EXPECT_EQ(reason(x), "ok") << x.detail;
            ++row;
        }
    }
    // Unit 2's one row sits on lines 14-15: a bad row there names line 14.
    std::string bad = csv;
    bad.replace(bad.rfind("i6.png,"), 7, "i6.png,x,");
    write_file(dir / "meta/bad.csv", bad);
    const auto b = read_all(*make_source("csv", {dir / "meta/bad.csv"}, opt), 2);
    ASSERT_EQ(b.size(), 1u);
    EXPECT_EQ(b[0].detail, (dir / "meta/bad.csv") + " line 14 (row 6): 3 fields, the header has 2");

    // Exactly divisible: 6 rows, 3 per unit -> 2 units.
    std::string six = csv.substr(0, csv.find("i6.png"));
    write_file(dir / "meta/six.csv", six);
    auto s6 = make_source("csv", {dir / "meta/six.csv"}, opt);
    EXPECT_EQ(s6->num_units(), 2u);
    EXPECT_EQ(read_every_unit(*s6).size(), 6u);
}

TEST(PrepSources, TsvAndCaptionsOnly) {
    TempDir dir;
    write_file(dir / "index.tsv", "title\tfilepath\n"
                                  "a caption, with a comma\tnot_there.jpg\n"
                                  "\"quoted\ttab\"\talso_not_there.jpg\n");
    auto src = make_source("tsv", {dir / "index.tsv"}, {});
    EXPECT_EQ(src->kind(), "tsv");
    auto s = read_all(*src, 0, /*captions_only=*/true);  // image files not opened
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(s[0].caption, "a caption, with a comma");
    EXPECT_EQ(s[0].key, "not_there.jpg");
    EXPECT_EQ(reason(s[0]), "ok");
    EXPECT_TRUE(s[0].image_bytes.empty());
    EXPECT_EQ(s[1].caption, "quoted\ttab");
    s = read_all(*src, 0);
    EXPECT_EQ(reason(s[0]), "missing_image");
    EXPECT_EQ(reason(s[1]), "missing_image");
}

TEST(PrepSources, JsonlBadLinesLabelsAndUnreadableImage) {
    TempDir dir;
    write_file(dir / "a.jpg", fake_image("a"));
    fs::create_directories(dir / "adir.jpg");  // exists, cannot be read as a file
    write_file(dir / "index.jsonl", "\xEF\xBB\xBF{\"filepath\": \"a.jpg\", \"title\": \"first\", \"label\": 2}\n"
                                    "\n"
                                    "not json at all\n"
                                    "[1, 2]\n"
                                    "{\"filepath\": \"a.jpg\", \"title\": 7, \"label\": 1}\r\n"
                                    "   \n"
                                    "{\"filepath\": \"adir.jpg\", \"title\": \"dir\", \"label\": \"4\"}\n"
                                    "{\"filepath\": \"a.jpg\", \"title\": \"neg\", \"label\": -3}\n"
                                    "{\"title\": \"no path\", \"label\": 0}\n"
                                    "{\"filepath\": 12, \"title\": \"number path\", \"label\": 0}\n"
                                    "{\"filepath\": \"a.jpg\", \"title\": \"unicode \\u00e9\", \"label\": 0, \"x\": {}}");
    SourceOptions opt;
    opt.label_col = "label";
    opt.rows_per_unit = 4;
    auto src = make_source("jsonl", {dir / "index.jsonl"}, opt);
    EXPECT_EQ(src->kind(), "jsonl");
    EXPECT_EQ(static_cast<const IndexFileSource&>(*src).num_rows(), 9);
    ASSERT_EQ(src->num_units(), 3u);
    EXPECT_EQ(src->unit_name(2), "index.jsonl rows 8-8");
    const auto s = read_every_unit(*src);
    ASSERT_EQ(s.size(), 9u);
    std::vector<std::string> reasons;
    for (const auto& x : s) reasons.push_back(reason(x));
    EXPECT_EQ(reasons, (std::vector<std::string>{"ok", "bad_record", "bad_record", "missing_caption",
                                                 "unreadable_image", "bad_label", "missing_image", "bad_record",
                                                 "ok"}));
    EXPECT_EQ(s[0].caption, "first");
    EXPECT_EQ(s[0].label, 2);
    EXPECT_EQ(s[0].image_bytes, bytes(fake_image("a")));
    EXPECT_EQ(s[0].group, dir / "a.jpg");
    EXPECT_HAS(s[1].detail, (dir / "index.jsonl") + " line 3 (row 1): not JSON");
    EXPECT_EQ(s[2].detail, (dir / "index.jsonl") + " line 4 (row 2): a JSON array, not an object");
    EXPECT_EQ(s[3].detail, (dir / "index.jsonl") + " line 5 (row 3): 'title' is a number, not a string");
    EXPECT_EQ(s[4].label, 4);
    EXPECT_EQ(s[4].detail, (dir / "adir.jpg") + ": Is a directory");
    EXPECT_EQ(s[5].detail, (dir / "index.jsonl") + " line 8 (row 5): label -3 is outside [0, 2^31)");
    EXPECT_EQ(s[6].detail, (dir / "index.jsonl") + " line 9 (row 6): no 'filepath'");
    EXPECT_EQ(s[7].detail, (dir / "index.jsonl") + " line 10 (row 7): 'filepath' is a number, not a string");
    EXPECT_EQ(s[8].caption, "unicode \xc3\xa9");

    write_file(dir / "other.jsonl", "{\"url\": \"u\", \"text\": \"t\"}\n");
    EXPECT_HAS(error_of([&] { make_source("jsonl", {dir / "other.jsonl"}, {}); }),
               "other.jsonl: no key 'filepath' in the first JSON object (keys: text, url); set --csv-img-key");
    write_file(dir / "blank.jsonl", "\n\n");
    EXPECT_HAS(error_of([&] { make_source("jsonl", {dir / "blank.jsonl"}, {}); }), "blank.jsonl is empty");
}

// ---------------------------------------------------------------- class folders

TEST(PrepSources, ClassFolder) {
    TempDir dir;
    const std::string root = dir / "val";
    write_file(root + "/n02/b.JPEG", fake_image("n02/b"));
    write_file(root + "/n02/a.png", fake_image("n02/a"));
    write_file(root + "/n02/sub/z.webp", fake_image("n02/sub/z"));
    write_file(root + "/n02/notes.txt", "not an image");
    write_file(root + "/n02/._a.png", "macOS junk");
    write_file(root + "/n01/x.jpg", fake_image("n01/x"));
    write_file(root + "/n01/y.jpeg", fake_image("n01/y"));
    write_file(root + "/.ipynb_checkpoints/q.jpg", "hidden folder");
    write_file(root + "/README.md", "a file, not a class");
    write_file(root + "/n03/c.Jpg", fake_image("n03/c"));

    SourceOptions opt;
    opt.rows_per_unit = 4;
    auto src = make_source("folder", {root}, opt);
    EXPECT_EQ(src->kind(), "folder");
    EXPECT_EQ(src->classnames(), (std::vector<std::string>{"n01", "n02", "n03"}));
    ASSERT_EQ(src->num_units(), 2u);
    EXPECT_EQ(src->unit_name(0), "val files 0-3");
    EXPECT_EQ(src->unit_name(1), "val files 4-5");
    EXPECT_EQ(src->describe(), "folder: " + root + " (3 classes, 6 images, captions 'a photo of a {}.')");
    const auto s = read_every_unit(*src);
    EXPECT_EQ(keys_of(s), (std::vector<std::string>{"n01/x.jpg", "n01/y.jpeg", "n02/a.png", "n02/b.JPEG",
                                                    "n02/sub/z.webp", "n03/c.Jpg"}));
    const std::vector<int32_t> labels = {0, 0, 1, 1, 1, 2};
    for (size_t i = 0; i < s.size(); ++i) {
        EXPECT_EQ(s[i].label, labels[i]);
        EXPECT_EQ(s[i].caption, detail::concat("a photo of a n0", labels[i] + 1, "."));
        EXPECT_EQ(s[i].image_bytes, bytes(fake_image(s[i].key.substr(0, s[i].key.rfind('.')))));
        EXPECT_EQ(s[i].image_name, root + "/" + s[i].key);
        EXPECT_EQ(reason(s[i]), "ok");
    }
    // Captions only: no bytes.
    for (const auto& x : read_all(*src, 0, true)) EXPECT_TRUE(x.image_bytes.empty());

    // Readable names from a classnames file, and a caption template.
    write_file(dir / "names.txt", "tench\ngoldfish\ngreat white shark\n");
    opt.classnames_file = dir / "names.txt";
    opt.caption_template = "{}: a photo of the {}";
    auto named = make_source("folder", {root}, opt);
    EXPECT_EQ(named->classnames(), (std::vector<std::string>{"tench", "goldfish", "great white shark"}));
    EXPECT_EQ(read_all(*named, 1)[1].caption, "great white shark: a photo of the great white shark");

    write_file(dir / "two.txt", "tench\ngoldfish\n");
    opt.classnames_file = dir / "two.txt";
    EXPECT_HAS(error_of([&] { make_source("folder", {root}, opt); }),
               "classnames file '" + (dir / "two.txt") + "' has 2 names but '" + root + "' has 3 class folders");

    // Errors: no class folder, an empty class, not a folder.
    write_file(dir / "flat/a.jpg", fake_image("a"));
    EXPECT_HAS(error_of([&] { make_source("folder", {dir / "flat"}, {}); }),
               "'" + (dir / "flat") + "' has no class sub-folders");
    write_file(dir / "holes/cat/a.jpg", fake_image("a"));
    fs::create_directories(dir / "holes/dog");
    write_file(dir / "holes/emu/readme.txt", "x");
    EXPECT_HAS(error_of([&] { make_source("folder", {dir / "holes"}, {}); }),
               "no image (.jpg .jpeg .png .webp) in the class folders dog, emu of");
    EXPECT_HAS(error_of([&] { make_source("folder", {dir / "nowhere"}, {}); }), "is not a folder");
}

}  // namespace
}  // namespace curaclip::prep
