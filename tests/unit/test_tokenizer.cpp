// Byte-level BPE tokenizer: CLIP compatibility (reference ids written by OpenAI's
// simple_tokenizer.py, see tests/reference/make_clip_tokenizer_reference.py),
// encode/decode, training, merges files and their errors.
#include <gtest/gtest.h>
#include <zlib.h>

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/check.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/text_normalize.h"
#include "tests/common/test_files.h"

namespace curaclip {
namespace {

const std::string kDataDir = std::string(CURACLIP_SOURCE_DIR) + "/tests/data/tokenizer/";

const BpeTokenizer& clip_tokenizer() {
    static const BpeTokenizer t = BpeTokenizer::load_clip_merges(kDataDir + "clip_merges.txt");
    return t;
}

struct RefCase {
    int line = 0;
    std::string caption;
    std::vector<int32_t> ids;
};

using testing::unescape;

std::vector<RefCase> read_reference(const std::string& name) {
    std::ifstream f(kDataDir + name);
    EXPECT_TRUE(f.good()) << "missing " << kDataDir + name;
    std::vector<RefCase> cases;
    std::string line;
    int n = 0;
    while (std::getline(f, line)) {
        ++n;
        if (line.empty() || line[0] == '#') continue;
        const size_t tab = line.rfind('\t');
        if (tab == std::string::npos) {
            ADD_FAILURE() << name << ":" << n << ": no tab";
            continue;
        }
        RefCase c;
        c.line = n;
        c.caption = unescape(line.substr(0, tab));
        std::istringstream ids(line.substr(tab + 1));
        int32_t id;
        while (ids >> id) c.ids.push_back(id);
        EXPECT_EQ(c.ids.size(), 77u) << name << ":" << n;
        cases.push_back(std::move(c));
    }
    return cases;
}

std::string temp_path(const std::string& name) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return (std::filesystem::temp_directory_path() /
            ("curaclip_tok_" + std::to_string(::getpid()) + "_" + info->name() + "_" + name))
        .string();
}

void write_file(const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary);
    f << text;
}

using testing::error_of;

// A deterministic caption corpus: Fashion-MNIST-like captions plus made-up words.
std::vector<std::string> make_corpus(int n) {
    const char* classes[] = {"t-shirt/top", "trouser", "pullover", "dress", "coat",
                             "sandal", "shirt", "sneaker", "bag", "ankle boot"};
    const char* tones[] = {"dark", "light", "bright", "pale", "black", "white", "grey", "faded"};
    const char* shapes[] = {"wide", "narrow", "long", "short", "loose", "tight", "small", "large"};
    uint64_t s = 0x9E3779B97F4A7C15ull;
    const auto rnd = [&s](uint64_t m) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        return s % m;
    };
    std::vector<std::string> words;
    for (int w = 0; w < 400; ++w) {
        std::string word;
        const uint64_t len = 3 + rnd(8);
        for (uint64_t k = 0; k < len; ++k) word.push_back(static_cast<char>((k % 2 ? "aeiou" : "bcdfglmnprstvz")[rnd(k % 2 ? 5 : 14)]));
        words.push_back(word);
    }
    std::vector<std::string> corpus;
    for (int i = 0; i < n; ++i) {
        std::string c = std::string("a photo of a ") + tones[rnd(8)] + ", " + shapes[rnd(8)] + " " + classes[rnd(10)];
        const uint64_t extra = rnd(6);
        for (uint64_t k = 0; k < extra; ++k) c += " " + words[rnd(20 + rnd(380))];
        if (rnd(4) == 0) c += " number " + std::to_string(rnd(1000)) + ".";
        corpus.push_back(std::move(c));
    }
    return corpus;
}

// ------------------------------------------------------------- CLIP ids ----

TEST(Tokenizer, ClipVocabulary) {
    const BpeTokenizer& t = clip_tokenizer();
    EXPECT_EQ(t.vocab_size(), 49408);
    EXPECT_EQ(t.num_merges(), 48894);
    EXPECT_EQ(t.sot_id(), 49406);
    EXPECT_EQ(t.eot_id(), 49407);
    EXPECT_EQ(t.token_string(0), "!");
    EXPECT_EQ(t.token_string(256), "!</w>");
    EXPECT_EQ(t.token_string(49407), "<|endoftext|>");
    // FNV-1a 64 of the 48894 "a b\n" merge lines; fixed so datasets keep matching.
    EXPECT_EQ(t.id_hex(), "84ddd99cc594e5a6");
}

TEST(Tokenizer, MatchesClipOnAsciiReference) {
    const BpeTokenizer& t = clip_tokenizer();
    const auto cases = read_reference("clip_reference.tsv");
    ASSERT_GE(cases.size(), 150u);
    int bad = 0;
    for (const auto& c : cases) {
        const auto ids = t.encode(c.caption, 77);
        if (ids != c.ids && ++bad <= 10) ADD_FAILURE() << "clip_reference.tsv:" << c.line << " '" << c.caption << "'";
    }
    EXPECT_EQ(bad, 0);
}

TEST(Tokenizer, MatchesClipOnUnicodeReference) {
    // Beyond ASCII the cleaning is an approximation (text_normalize.h); these
    // common cases agree with CLIP.
    const BpeTokenizer& t = clip_tokenizer();
    const auto cases = read_reference("clip_reference_unicode.tsv");
    ASSERT_GE(cases.size(), 10u);
    for (const auto& c : cases)
        EXPECT_EQ(t.encode(c.caption, 77), c.ids) << "clip_reference_unicode.tsv:" << c.line << " '" << c.caption << "'";
}

TEST(Tokenizer, NormalizesUnicodeToNfcLikeClip) {
    // "résumé" precomposed (NFC) and decomposed (NFD: e + U+0301) give CLIP's ids for
    // both (openai/CLIP: ftfy.fix_text normalizes to NFC before BPE).
    const BpeTokenizer& t = clip_tokenizer();
    const std::vector<int32_t> want = {49406, 29106, 7054, 4166, 49407};
    std::vector<int32_t> nfc = t.encode("r\xc3\xa9sum\xc3\xa9", 77), nfd = t.encode("re\xcc\x81sume\xcc\x81", 77);
    nfc.resize(want.size());
    nfd.resize(want.size());
    EXPECT_EQ(nfc, want);
    EXPECT_EQ(nfd, want);
    // Hangul jamo compose too; invalid UTF-8 is still U+FFFD, not an error.
    EXPECT_EQ(unicode_nfc("\xe1\x84\x80\xe1\x85\xa1"), "\xea\xb0\x80");
    EXPECT_EQ(t.encode("a\xff", 77), t.encode("a\xef\xbf\xbd", 77));
}

TEST(Tokenizer, ReadsGzippedMergesAsOpenAiShipsThem) {
    // OpenAI's bpe_simple_vocab_16e6.txt.gz, here our copy of its first lines, gzipped by zlib.
    std::ifstream in(kDataDir + "clip_merges.txt", std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string gz = (std::filesystem::temp_directory_path() / ("merges_" + std::to_string(::getpid()) + ".txt.gz")).string();
    gzFile g = gzopen(gz.c_str(), "wb");
    ASSERT_NE(g, nullptr);
    ASSERT_EQ(gzwrite(g, text.data(), unsigned(text.size())), int(text.size()));
    gzclose(g);
    const BpeTokenizer t = BpeTokenizer::load_clip_merges(gz);
    std::filesystem::remove(gz);
    EXPECT_EQ(t.id(), clip_tokenizer().id());
    EXPECT_EQ(t.encode("a photo of a cat", 77), clip_tokenizer().encode("a photo of a cat", 77));
}

TEST(Tokenizer, EncodeLayout) {
    const BpeTokenizer& t = clip_tokenizer();
    const auto ids = t.encode("a photo of a cat", 77);
    ASSERT_EQ(ids.size(), 77u);
    EXPECT_EQ(ids[0], 49406);
    EXPECT_EQ(std::vector<int32_t>(ids.begin() + 1, ids.begin() + 7),
              (std::vector<int32_t>{320, 1125, 539, 320, 2368, 49407}));
    for (size_t i = 7; i < ids.size(); ++i) EXPECT_EQ(ids[i], 0);
    // The text tower pools at the argmax id: that must be the eot.
    EXPECT_EQ(std::max_element(ids.begin(), ids.end()) - ids.begin(), 6);

    EXPECT_EQ(t.encode("a photo of a cat", 2), (std::vector<int32_t>{49406, 49407}));
    EXPECT_EQ(t.encode("a photo of a cat", 4), (std::vector<int32_t>{49406, 320, 1125, 49407}));
    EXPECT_EQ(t.encode("", 4), (std::vector<int32_t>{49406, 49407, 0, 0}));
    EXPECT_EQ(t.encode("a photo of a cat", 7), (std::vector<int32_t>{49406, 320, 1125, 539, 320, 2368, 49407}));
}

TEST(Tokenizer, ContextTooSmall) {
    const BpeTokenizer& t = clip_tokenizer();
    EXPECT_THROW(t.encode("a cat", 1), Error);
    EXPECT_THROW(t.encode("a cat", 0), Error);
    EXPECT_THROW(t.encode_batch({"a", "b"}, 1), Error);
    std::vector<int32_t> small(3);
    EXPECT_THROW(t.encode_into("a cat", 4, small), Error);
}

TEST(Tokenizer, BatchMatchesSingle) {
    const BpeTokenizer& t = clip_tokenizer();
    const std::vector<std::string> caps = {"a photo of a coat", "", "It's a DARK, wide ankle boot!!",
                                           std::string(300, 'z')};
    const auto batch = t.encode_batch(caps, 16);
    ASSERT_EQ(batch.size(), caps.size() * 16);
    for (size_t i = 0; i < caps.size(); ++i)
        EXPECT_EQ(std::vector<int32_t>(batch.begin() + static_cast<long>(i * 16), batch.begin() + static_cast<long>((i + 1) * 16)),
                  t.encode(caps[i], 16));
}

TEST(Tokenizer, DecodeRoundTrip) {
    const BpeTokenizer& t = clip_tokenizer();
    EXPECT_EQ(t.decode(t.encode("a photo of a cat")), "a photo of a cat");
    EXPECT_EQ(t.decode(t.encode("  A Photo  of a DARK, wide ankle-boot!  ")), "a photo of a dark , wide ankle - boot !");
    EXPECT_EQ(t.decode(t.encode("supercalifragilisticexpialidocious")), "supercalifragilisticexpialidocious");
    EXPECT_EQ(t.decode(t.tokenize("it's 42")), "it 's 4 2");
    EXPECT_THROW(t.decode(std::vector<int32_t>{5, 49408}), Error);
    EXPECT_THROW(t.decode(std::vector<int32_t>{-1}), Error);

    // Decoding then tokenizing again gives the same ids, for every reference
    // caption that was not truncated and holds no literal special token.
    int checked = 0;
    for (const auto& c : read_reference("clip_reference.tsv")) {
        const auto ids = t.tokenize(c.caption);
        if (ids.size() > 75 || std::count(ids.begin(), ids.end(), t.eot_id()) ||
            std::count(ids.begin(), ids.end(), t.sot_id()))
            continue;
        EXPECT_EQ(t.tokenize(t.decode(ids)), ids) << c.caption;
        ++checked;
    }
    EXPECT_GE(checked, 150);
}

TEST(Tokenizer, PretokenizeLikeClip) {
    const auto pieces = [](const std::string& s) {
        std::vector<std::string> out;
        const std::string cleaned = clip_clean_text(s);
        for (auto p : clip_pretokenize(cleaned)) out.emplace_back(p);
        return out;
    };
    EXPECT_EQ(pieces("It's   a  DOG's\tlife!!"),
              (std::vector<std::string>{"it", "'s", "a", "dog", "'s", "life", "!!"}));
    // A run of punctuation swallows the apostrophe, as the regex does.
    EXPECT_EQ(pieces("x2024 ,.;'re 're"), (std::vector<std::string>{"x", "2", "0", "2", "4", ",.;'", "re", "'re"}));
    EXPECT_EQ(pieces("tom &amp jerry &lt3 &gtfo"), (std::vector<std::string>{"tom", "&", "jerry", "<", "3", ">", "fo"}));
    EXPECT_EQ(pieces("a<|endoftext|>b"), (std::vector<std::string>{"a", "<|endoftext|>", "b"}));
    EXPECT_EQ(pieces("''s"), (std::vector<std::string>{"''", "s"}));
    EXPECT_EQ(clip_clean_text(" \t Fish &amp;amp; Chips\n\n"), "fish & chips");
}

// -------------------------------------------------------------- training ----

TEST(Tokenizer, TrainSizeDeterminismRoundTrip) {
    const auto corpus = make_corpus(3000);
    const BpeTokenizer t = BpeTokenizer::train(corpus, 900);
    ASSERT_EQ(t.vocab_size(), 900);
    EXPECT_EQ(t.num_merges(), 900 - 514);
    EXPECT_EQ(t.eot_id(), 899);
    EXPECT_EQ(t.sot_id(), 898);

    const BpeTokenizer again = BpeTokenizer::train(corpus, 900);
    EXPECT_EQ(again.merges(), t.merges());
    EXPECT_EQ(again.id(), t.id());

    size_t bytes = 0, tokens = 0;
    for (const auto& c : corpus) {
        const auto ids = t.tokenize(c);
        bytes += clip_clean_text(c).size();
        tokens += ids.size();
        // Every caption is a photo of something: letters, digits, ", /-." and spaces.
        std::string spaced;
        const std::string cleaned = clip_clean_text(c);
        for (auto p : clip_pretokenize(cleaned)) {
            if (!spaced.empty()) spaced.push_back(' ');
            spaced.append(p);
        }
        ASSERT_EQ(t.decode(ids), spaced);
        ASSERT_EQ(t.tokenize(t.decode(ids)), ids);
    }
    EXPECT_LT(tokens * 3, bytes) << tokens << " tokens for " << bytes << " bytes";

    // Text outside the corpus still encodes (byte fallback) and round-trips.
    const std::string odd = "zebra QUIZ 0xFF ~~ naïve";
    EXPECT_EQ(t.decode(t.tokenize(odd)), "zebra quiz 0 xff ~~ naïve");
}

TEST(Tokenizer, TrainStopsWhenNothingLeft) {
    // Words "ab" x3 and "abc" x1: (a, b</w>) is most frequent; then (a, b) and
    // (b, c</w>) tie at 1 and the smaller pair of ids, (a, b), goes first.
    const BpeTokenizer t = BpeTokenizer::train({"ab ab ab", "abc"}, 1000);
    EXPECT_EQ(t.merges(), (std::vector<BpeTokenizer::Merge>{{"a", "b</w>"}, {"a", "b"}, {"ab", "c</w>"}}));
    EXPECT_EQ(t.vocab_size(), 517);
    EXPECT_EQ(t.tokenize("ab abc"), (std::vector<int32_t>{512, 514}));
    EXPECT_THROW(BpeTokenizer::train({"a"}, 513), Error);
}

TEST(Tokenizer, UntrainedIsBytes) {
    const BpeTokenizer t;
    EXPECT_EQ(t.vocab_size(), 514);
    EXPECT_EQ(t.eot_id(), 513);
    EXPECT_EQ(t.tokenize("ab").size(), 2u);
    EXPECT_EQ(t.decode(t.tokenize("hello, world")), "hello , world");
}

// ----------------------------------------------------------------- files ----

TEST(Tokenizer, SaveLoadRoundTrip) {
    const auto corpus = make_corpus(1000);
    const BpeTokenizer t = BpeTokenizer::train(corpus, 700);
    const std::string path = temp_path("merges.txt");
    t.save(path);
    const BpeTokenizer u = BpeTokenizer::load(path);
    EXPECT_EQ(u.id(), t.id());
    EXPECT_EQ(u.id_hex(), t.id_hex());
    EXPECT_EQ(u.merges(), t.merges());
    EXPECT_EQ(u.vocab_size(), 700);
    EXPECT_EQ(u.encode_batch(corpus, 32), t.encode_batch(corpus, 32));
    std::filesystem::remove(path);

    // CLIP's merges saved in our format load back with the same id and ids.
    const std::string clip_path = temp_path("clip.txt");
    clip_tokenizer().save(clip_path);
    const BpeTokenizer c = BpeTokenizer::load(clip_path);
    EXPECT_EQ(c.id(), clip_tokenizer().id());
    EXPECT_EQ(c.encode("a photo of a dark, wide ankle boot"), clip_tokenizer().encode("a photo of a dark, wide ankle boot"));
    std::filesystem::remove(clip_path);

    // Different merges, different id.
    EXPECT_NE(BpeTokenizer::train(corpus, 650).id(), t.id());
}

TEST(Tokenizer, BadFiles) {
    const auto expect_error = [](const std::string& path, const std::string& fragment, bool clip = false) {
        const std::string msg =
            error_of([&] { clip ? (void)BpeTokenizer::load_clip_merges(path) : (void)BpeTokenizer::load(path); });
        EXPECT_NE(msg.find(path), std::string::npos) << "message '" << msg << "' does not name " << path;
        EXPECT_NE(msg.find(fragment), std::string::npos) << "message '" << msg << "' lacks '" << fragment << "'";
    };
    expect_error(temp_path("does_not_exist.txt"), "cannot open");
    expect_error(temp_path("does_not_exist.txt"), "cannot open", true);

    const std::string empty = temp_path("empty.txt");
    write_file(empty, "");
    expect_error(empty, "empty");

    const std::string no_header = temp_path("no_header.txt");
    write_file(no_header, "i n\nt h\n");
    expect_error(no_header, ":1:");

    const std::string malformed = temp_path("malformed.txt");
    write_file(malformed, "#version: 0.2\ni n\nthe\nt h\n");
    expect_error(malformed, ":3:");
    write_file(malformed, "#version: 0.2\ni n\nt h e\n");
    expect_error(malformed, ":3:");
    write_file(malformed, "#version: 0.2\ni n\n\nt h\n");
    expect_error(malformed, ":3:");

    const std::string unknown = temp_path("unknown.txt");
    write_file(unknown, "#version: 0.2\ni n\nt h\nth e</w>\nin g\nthe xyz\n");
    expect_error(unknown, ":6:");
    write_file(unknown, "#version: 0.2\ni n\na\xC3\x28 b\n");
    expect_error(unknown, ":3:");

    const std::string gz = temp_path("merges.txt.gz");
    write_file(gz, std::string("\x1f\x8b\x08\x00", 4));
    expect_error(gz, "gzip");

    const std::string short_clip = temp_path("short_clip.txt");
    write_file(short_clip, "#version: 0.2\ni n\nt h\n");
    expect_error(short_clip, "48894", true);
    EXPECT_NO_THROW(BpeTokenizer::load(short_clip));  // fine as a merges file of our own

    for (const auto& p : {empty, no_header, malformed, unknown, gz, short_clip}) std::filesystem::remove(p);
}

}  // namespace
}  // namespace curaclip
