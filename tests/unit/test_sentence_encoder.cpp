// The BERT sentence encoder of src/encoder/ (issue 14): WordPiece edge cases, the
// model folder's checks, pooling against a float64 reference, the padded attention op
// against attention_forward on the unpadded rows, a tiny random BERT written by the
// test against a float64 forward pass, and parity with sentence-transformers on the
// real all-MiniLM-L6-v2 (tests/data/sentence_encoder/, made by
// tests/reference/make_sentence_encoder_reference.py) when the model is in
// .cache/models/ (jobs/install_deps.sh --models), else skipped saying so.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "encoder/bert_config.h"
#include "encoder/bert_encoder.h"
#include "encoder/pooling.h"
#include "encoder/wordpiece.h"
#include "io/safetensors.h"
#include "tests/common/test_files.h"
#include "tests/common/tiny_bert.h"

namespace curaclip {
namespace {

namespace fs = std::filesystem;
using encoder::BertEncoder;
using encoder::Pooling;
using encoder::WordPieceTokenizer;
using testing::expect_error;
using testing::TempDir;
using testing::TinyBert;

const std::string kMiniLM = std::string(CURACLIP_SOURCE_DIR) + "/.cache/models/all-MiniLM-L6-v2";
const std::string kRefDir = std::string(CURACLIP_SOURCE_DIR) + "/tests/data/sentence_encoder/";

// ---- WordPiece -------------------------------------------------------------------------
std::vector<std::string> small_vocab() {
    return {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "hello", "world", ",", "!", "a",
            "##b", "cafe", "中", "文", ".", "$", "~", "run", "##ning", "##n", "e"};
}
std::vector<std::string> words(const WordPieceTokenizer& t, const std::string& s) { return t.basic_tokenize(s); }
std::vector<int32_t> pieces(const WordPieceTokenizer& t, const std::string& w) {
    std::vector<int32_t> v;
    t.wordpiece(w, v);
    return v;
}

TEST(WordPiece, BasicTokenizerNormalizes) {
    const WordPieceTokenizer t(small_vocab());
    using V = std::vector<std::string>;
    EXPECT_EQ(words(t, "Hello, World!"), (V{"hello", ",", "world", "!"}));
    // accents stripped after NFD, upper case lowered
    EXPECT_EQ(words(t, "Café CRÈME naïve"), (V{"cafe", "creme", "naive"}));
    // CJK ideographs split one by one; kana/hangul are not CJK ideographs
    EXPECT_EQ(words(t, "中文abc日本語のテ"), (V{"中", "文", "abc", "日", "本", "語", "のテ"}));
    // ASCII symbols count as punctuation ($ + < = > ^ ` | ~), emoji do not
    EXPECT_EQ(words(t, "$5+x=y~z😀!"), (V{"$", "5", "+", "x", "=", "y", "~", "z😀", "!"}));
    // white space of any kind separates; control and format characters vanish
    EXPECT_EQ(words(t, "a\tb\nc\u00a0d\u3000e"), (V{"a", "b", "c", "d", "e"}));
    EXPECT_EQ(words(t, "zero\u200bwidth bell\x07"), (V{"zerowidth", "bell"}));
    EXPECT_EQ(words(t, "re\xef\xbf\xbdplaced"), (V{"replaced"}));  // U+FFFD dropped
    EXPECT_EQ(words(t, "bad\xffutf8"), (V{"badutf8"}));          // invalid byte -> U+FFFD -> dropped
    EXPECT_EQ(words(t, "Unicode «quotes» — dash"), (V{"unicode", "«", "quotes", "»", "—", "dash"}));
    EXPECT_TRUE(words(t, "").empty());
    EXPECT_TRUE(words(t, " \t\n ").empty());
    EXPECT_EQ(encoder::bert_normalize("ÅNGSTRÖM\u0301"), "angstrom");
}

TEST(WordPiece, GreedyLongestMatchAndUnknown) {
    const WordPieceTokenizer t(small_vocab());
    EXPECT_EQ(pieces(t, "unaffable"), (std::vector<int32_t>{4, 5, 6}));   // un ##aff ##able
    EXPECT_EQ(pieces(t, "running"), (std::vector<int32_t>{19, 20}));       // longest match: ##ning, not ##n
    EXPECT_EQ(pieces(t, "ab"), (std::vector<int32_t>{11, 12}));
    EXPECT_EQ(pieces(t, "unaffablex"), (std::vector<int32_t>{1}));        // any unmatched rest -> one [UNK]
    EXPECT_EQ(pieces(t, "zzz"), (std::vector<int32_t>{1}));
    EXPECT_EQ(pieces(t, "a"), (std::vector<int32_t>{11}));
    // more than 100 code points -> [UNK] even if it would match; 100 is still pieced
    std::string w100 = "a";
    for (int i = 0; i < 99; ++i) w100 += "b";
    std::vector<int32_t> want100(100, 12);
    want100[0] = 11;  // a ##b ##b ...
    EXPECT_EQ(pieces(t, w100), want100);
    EXPECT_EQ(pieces(t, w100 + "b"), (std::vector<int32_t>{1}));
    // code points, not bytes: 60 two-byte characters are a 60-character word
    std::string e60;
    for (int i = 0; i < 60; ++i) e60 += "é";
    EXPECT_EQ(pieces(t, e60), (std::vector<int32_t>{1}));  // no "##é": [UNK], not > 100 chars
}

TEST(WordPiece, EncodeAddsSpecialsAndTruncates) {
    const WordPieceTokenizer t(small_vocab());
    EXPECT_EQ(t.encode("Hello, world!", 16), (std::vector<int32_t>{2, 7, 9, 8, 10, 3}));
    EXPECT_EQ(t.encode("", 16), (std::vector<int32_t>{2, 3}));
    EXPECT_EQ(t.encode("hello world hello", 4), (std::vector<int32_t>{2, 7, 8, 3}));
    // truncation cuts inside a word's pieces, as tokenizers' longest_first
    EXPECT_EQ(t.encode("unaffable", 4), (std::vector<int32_t>{2, 4, 5, 3}));
    EXPECT_EQ(t.encode("hello", 2), (std::vector<int32_t>{2, 3}));
    expect_error([&] { t.encode("hello", 1); }, {"max_length 1"});
    EXPECT_EQ(t.cls_id(), 2);
    EXPECT_EQ(t.sep_id(), 3);
    EXPECT_EQ(t.pad_id(), 0);
    EXPECT_EQ(t.unk_id(), 1);
}

TEST(WordPiece, VocabularyErrors) {
    expect_error([] { WordPieceTokenizer t({"[PAD]", "[UNK]", "[CLS]"}); }, {"[SEP]"});
    TempDir d;
    expect_error([&] { WordPieceTokenizer::from_file(d / "nope.txt"); }, {"nope.txt", "cannot be opened"});
    std::ofstream(d / "v.txt") << "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nhi\r\n";
    const WordPieceTokenizer t = WordPieceTokenizer::from_file(d / "v.txt");
    EXPECT_EQ(t.id("hi"), 4);  // CRLF files work
    std::ofstream(d / "w.txt") << "[PAD]\n[UNK]\n";
    expect_error([&] { WordPieceTokenizer::from_file(d / "w.txt"); }, {"w.txt", "[CLS]"});
}

// ---- pooling against float64 -------------------------------------------------------------
TEST(SentencePooling, MatchesFloat64Reference) {
    const int64_t B = 3, T = 5, C = 7;
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-2.f, 2.f);
    std::vector<float> h(static_cast<size_t>(B * T * C)), W(static_cast<size_t>(C * C)), bias(static_cast<size_t>(C));
    for (auto* v : {&h, &W, &bias})
        for (float& x : *v) x = u(rng);
    const std::vector<int32_t> len = {5, 1, 3};
    for (Pooling mode : {Pooling::mean, Pooling::cls, Pooling::pooler}) {
        std::vector<float> out(static_cast<size_t>(B * C));
        encoder::pool_rows(mode, h.data(), len.data(), B, T, C, W.data(), bias.data(), out.data());
        encoder::l2_normalize_rows(out.data(), B, C);
        for (int64_t b = 0; b < B; ++b) {
            std::vector<double> want(static_cast<size_t>(C), 0.0);
            for (int64_t c = 0; c < C; ++c) {
                if (mode == Pooling::mean) {
                    for (int64_t t = 0; t < len[size_t(b)]; ++t) want[size_t(c)] += h[size_t((b * T + t) * C + c)];
                    want[size_t(c)] /= len[size_t(b)];
                } else if (mode == Pooling::cls) {
                    want[size_t(c)] = h[size_t(b * T * C + c)];
                } else {
                    double s = bias[size_t(c)];
                    for (int64_t k = 0; k < C; ++k) s += double(W[size_t(c * C + k)]) * h[size_t(b * T * C + k)];
                    want[size_t(c)] = std::tanh(s);
                }
            }
            double n = 0;
            for (double v : want) n += v * v;
            for (int64_t c = 0; c < C; ++c)
                EXPECT_NEAR(out[size_t(b * C + c)], want[size_t(c)] / std::sqrt(n), 2e-7)
                    << encoder::pooling_name(mode) << " row " << b << " col " << c;
        }
    }
    // padded tokens do not count: changing them leaves mean pooling unchanged
    std::vector<float> a(static_cast<size_t>(B * C)), b2(static_cast<size_t>(B * C));
    encoder::pool_rows(Pooling::mean, h.data(), len.data(), B, T, C, nullptr, nullptr, a.data());
    h[size_t((1 * T + 3) * C + 2)] = 1e6f;
    encoder::pool_rows(Pooling::mean, h.data(), len.data(), B, T, C, nullptr, nullptr, b2.data());
    EXPECT_EQ(a, b2);
    const std::vector<int32_t> bad = {5, 0, 3};
    expect_error([&] { encoder::pool_rows(Pooling::mean, h.data(), bad.data(), B, T, C, nullptr, nullptr, a.data()); },
                 {"lengths[1] = 0"});
}

// ---- the padded attention op: each row equals unpadded attention of its valid tokens ----
TEST(PaddedAttention, EqualsAttentionOnTheValidTokens) {
    auto be = make_backend("cpu-f64");
    const int64_t B = 3, T = 6, C = 8;
    const int NH = 2;
    std::mt19937 rng(5);
    std::uniform_real_distribution<double> u(-2, 2);
    std::vector<double> qkv(static_cast<size_t>(B * T * 3 * C));
    for (double& x : qkv) x = u(rng);
    const std::vector<int32_t> len = {6, 1, 4};
    auto alloc = [&](Shape s, DType dt) { return Tensor{be->alloc(static_cast<size_t>(s.numel()) * dtype_size(dt)), dt, s}; };
    Tensor tq = alloc({B, T, 3 * C}, DType::f64), to = alloc({B, T, C}, DType::f64), tl = alloc({B}, DType::i32);
    be->upload(tq, qkv.data());
    be->upload_raw(tl, len.data());
    be->attention_padded_forward(to, tq, tl, NH);
    std::vector<double> got(static_cast<size_t>(B * T * C));
    be->download(got.data(), to);
    for (int64_t b = 0; b < B; ++b) {
        const int64_t L = len[size_t(b)];
        // Attention of the first L tokens alone (non-causal); padded query rows i >= L
        // attend to the same keys: compare them to the rows of a sequence whose
        // first L tokens are b's and whose query is row i.
        for (int64_t i = 0; i < T; ++i) {
            std::vector<double> sub(static_cast<size_t>((L + 1) * 3 * C));
            for (int64_t t = 0; t < L; ++t)
                std::copy_n(qkv.begin() + (b * T + t) * 3 * C, 3 * C, sub.begin() + t * 3 * C);
            // an extra token whose q is row i's and whose key scores -inf is not
            // expressible; instead compute row i by hand in double:
            for (int h = 0; h < NH; ++h) {
                const int64_t hs = C / NH;
                std::vector<double> s(static_cast<size_t>(L));
                double mx = -1e300;
                for (int64_t j = 0; j < L; ++j) {
                    double d = 0;
                    for (int64_t c = 0; c < hs; ++c)
                        d += qkv[size_t((b * T + i) * 3 * C + h * hs + c)] * qkv[size_t((b * T + j) * 3 * C + C + h * hs + c)];
                    s[size_t(j)] = d / std::sqrt(double(hs));
                    mx = std::max(mx, s[size_t(j)]);
                }
                double z = 0;
                for (double& v : s) z += (v = std::exp(v - mx));
                for (int64_t c = 0; c < hs; ++c) {
                    double o = 0;
                    for (int64_t j = 0; j < L; ++j) o += s[size_t(j)] / z * qkv[size_t((b * T + j) * 3 * C + 2 * C + h * hs + c)];
                    EXPECT_NEAR(got[size_t((b * T + i) * C + h * hs + c)], o, 1e-12) << "b " << b << " i " << i;
                }
            }
        }
        // and the valid rows are exactly attention_forward of the unpadded sequence
        Tensor sq = alloc({1, L, 3 * C}, DType::f64), so = alloc({1, L, C}, DType::f64), st = alloc({1, NH, L}, DType::f64);
        be->upload(sq, qkv.data() + b * T * 3 * C);
        be->attention_forward(so, st, sq, NH, false);
        std::vector<double> want(static_cast<size_t>(L * C));
        be->download(want.data(), so);
        for (int64_t k = 0; k < L * C; ++k) EXPECT_NEAR(got[size_t(b * T * C + k)], want[size_t(k)], 1e-12);
        for (Tensor t : {sq, so, st}) be->free(t.data);
    }
    const std::vector<int32_t> bad = {6, 7, 1};
    be->upload_raw(tl, bad.data());
    expect_error([&] { be->attention_padded_forward(to, tq, tl, NH); }, {"attention_padded_forward", "lengths[1] = 7"});
    for (Tensor t : {tq, to, tl}) be->free(t.data);
}

TEST(BertEncoder, TinyRandomModelMatchesFloat64Forward) {
    TempDir d;
    TinyBert m;
    m.write(d / "tiny", R"({"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": false})");
    const std::vector<std::string> texts = {"a photo of a dress.", "bag", "a bright, dark bags photo of a dress a bag",
                                            "", "zzz unknown words", "a a a a a a a a a a a a a a a a a a a a"};
    for (const std::string backend : {"cpu-f64", "cpu"})
        for (const char* pooling : {"", "cls", "pooler"})
            for (int64_t batch : {1, 4}) {
                auto be = make_backend(backend);
                BertEncoder enc(*be, d / "tiny", batch, pooling);
                EXPECT_EQ(enc.config().max_seq_length, 12);
                EXPECT_EQ(enc.pooling(), *pooling ? encoder::parse_pooling(pooling) : Pooling::mean);
                const std::vector<float> got = enc.embed(texts);
                ASSERT_EQ(got.size(), texts.size() * 8);
                for (size_t i = 0; i < texts.size(); ++i) {
                    const auto ids = enc.tokenizer().encode(texts[i], 12);
                    if (i == 5) {
                        EXPECT_EQ(ids.size(), 12u);  // truncated at max_position_embeddings
                    }
                    const auto want = m.reference(ids, enc.pooling());
                    // the output rows are float32 (as the side files store them): 2e-7 is their rounding
                    const double tol = backend == "cpu-f64" ? 2e-7 : 2e-5;
                    for (int64_t c = 0; c < 8; ++c)
                        EXPECT_NEAR(got[i * 8 + size_t(c)], want[size_t(c)], tol)
                            << backend << " pooling '" << pooling << "' batch " << batch << " text " << i;
                }
            }
}

TEST(BertEncoder, IdIsTheFolderContentAndPrefixedNamesLoad) {
    TempDir d;
    TinyBert a, b;
    a.write(d / "one", "");
    b.write(d / "two", "", /*prefix=*/true);  // "bert." names, as BertForPreTraining checkpoints
    auto be = make_backend("cpu");
    BertEncoder ea(*be, d / "one"), eb(*be, d / "two");
    EXPECT_EQ(ea.pooling(), Pooling::mean);  // no 1_Pooling: sentence-transformers' default
    EXPECT_EQ(ea.id().rfind("bert one mean ", 0), 0u) << ea.id();
    EXPECT_NE(ea.id(), eb.id());  // the safetensors headers differ
    const std::vector<std::string> t = {"a photo of a dress"};
    const auto x = ea.embed(t), y = eb.embed(t);
    for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], y[i], 1e-6);
}

TEST(BertEncoder, FolderErrors) {
    TempDir d;
    auto be = make_backend("cpu");
    expect_error([&] { BertEncoder e(*be, d / "missing"); }, {"missing", "is not a folder"});
    TinyBert m;
    m.write(d / "m", "");
    fs::remove(d / "m/vocab.txt");
    expect_error([&] { BertEncoder e(*be, d / "m"); }, {"vocab.txt", "is missing"});
    m.write(d / "r", "");
    std::ofstream(d / "r/config.json") << R"({"model_type": "roberta", "vocab_size": 40})";
    expect_error([&] { BertEncoder e(*be, d / "r"); }, {"config.json", "model_type 'roberta'"});
    m.write(d / "a", "");
    {
        nlohmann::json c = nlohmann::json::parse(std::ifstream(d / "a/config.json"));
        c["hidden_act"] = "relu";
        std::ofstream(d / "a/config.json") << c.dump();
    }
    expect_error([&] { BertEncoder e(*be, d / "a"); }, {"hidden_act 'relu'"});
    m.write(d / "s", "");
    {
        nlohmann::json c = nlohmann::json::parse(std::ifstream(d / "s/config.json"));
        c["intermediate_size"] = 17;
        std::ofstream(d / "s/config.json") << c.dump();
    }
    expect_error([&] { BertEncoder e(*be, d / "s"); }, {"intermediate.dense.weight", "[16, 8]", "[17, 8]"});
    m.write(d / "p", R"({"pooling_mode_max_tokens": true})");
    expect_error([&] { BertEncoder e(*be, d / "p"); }, {"pooling_mode_max_tokens"});
    TinyBert n;
    n.write(d / "np", "");
    std::vector<io::SafetensorsOut> out;
    for (auto& [k, v] : n.w)
        if (k.rfind("pooler", 0) != 0) out.push_back({k, n.shapes[k], v.data()});
    fs::remove(d / "np/model.safetensors");
    io::write_safetensors(d / "np/model.safetensors", out, {});
    BertEncoder ok(*be, d / "np");  // the pooler is only needed for pooler pooling
    expect_error([&] { BertEncoder e(*be, d / "np", 8, "pooler"); }, {"pooler.dense.weight"});
    expect_error([&] { BertEncoder e(*be, d / "np", 8, "max"); }, {"mean, cls or pooler"});
    expect_error([&] { ok.embed_ids({{2, 99, 3}}); }, {"id 99", "outside the vocabulary"});
}

// ---- parity with sentence-transformers (all-MiniLM-L6-v2) -----------------------------------
TEST(BertEncoder, MiniLMParityWithSentenceTransformers) {
    if (!fs::exists(kMiniLM + "/model.safetensors"))
        GTEST_SKIP() << "all-MiniLM-L6-v2 is not in " << kMiniLM
                     << " (bash jobs/install_deps.sh --models fetches it): parity not checked";
    const nlohmann::json ref = nlohmann::json::parse(std::ifstream(kRefDir + "reference.json"));
    std::ifstream ef(kRefDir + "embeddings.f32", std::ios::binary);
    const auto& caps = ref["captions"];
    const size_t n = caps.size(), D = 384;
    ASSERT_EQ(n, 500u);
    std::vector<float> want(n * D);
    ef.read(reinterpret_cast<char*>(want.data()), std::streamsize(want.size() * sizeof(float)));
    ASSERT_TRUE(ef.good());
    auto be = make_backend("cpu");
    BertEncoder enc(*be, kMiniLM, 64);
    EXPECT_EQ(enc.config().max_seq_length, ref["max_seq_length"].get<int64_t>());
    std::vector<std::string> texts;
    int id_mismatch = 0;
    for (size_t i = 0; i < n; ++i) {
        texts.push_back(caps[i]["text"].get<std::string>());
        const auto ids = enc.tokenizer().encode(texts.back(), int(enc.config().max_seq_length));
        const auto hf = caps[i]["ids"].get<std::vector<int32_t>>();
        if (ids != hf && ++id_mismatch <= 5) ADD_FAILURE() << "token ids differ for caption " << i << ": " << texts.back();
    }
    EXPECT_EQ(id_mismatch, 0);
    const std::vector<float> got = enc.embed(texts);
    double worst = 1.0;
    size_t worst_i = 0;
    for (size_t i = 0; i < n; ++i) {
        double dot = 0, a = 0, b = 0;
        for (size_t c = 0; c < D; ++c) {
            dot += double(got[i * D + c]) * want[i * D + c];
            a += double(got[i * D + c]) * got[i * D + c];
            b += double(want[i * D + c]) * want[i * D + c];
        }
        const double cos = dot / std::sqrt(a * b);
        if (cos < worst) worst = cos, worst_i = i;
    }
    EXPECT_GE(worst, 0.9999) << "caption " << worst_i << ": " << texts[worst_i];
    std::printf("[ parity ] 500 captions: token ids identical %zu/500, min cosine %.7f (caption %zu)\n",
                n - size_t(id_mismatch), worst, worst_i);
}

}  // namespace
}  // namespace curaclip
