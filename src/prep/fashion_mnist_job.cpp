#include "prep/fashion_mnist_job.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "core/check.h"
#include "core/philox.h"
#include "core/sampling.h"
#include "io/dataset_writer.h"
#include "io/durable_file.h"
#include "prep/fashion_mnist.h"
#include "tokenizer/bpe_tokenizer.h"

namespace curaclip::prep {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The first k entries of a Philox-driven partial Fisher-Yates shuffle of [0, n).
std::vector<int64_t> sample_without_replacement(int64_t n, int64_t k, uint64_t seed, uint64_t stream) {
    Philox rng(seed, RngPurpose::noise, stream, 0);
    return fisher_yates_prefix(rng, n, k);
}

// Philox step keys of the prep streams (kept apart from the caption templates').
constexpr uint64_t kNoiseVictims = 1, kNoiseSources = 2, kCurated = 3;

struct Split {
    FashionMnistSplit raw;
    std::vector<int32_t> labels;
    std::vector<ImageStats> stats;
    std::vector<std::string> captions;
};

}  // namespace

FashionMnistPrepSummary prep_fashion_mnist(const FashionMnistPrepOptions& o) {
    const std::string& src = o.source;
    const std::string& out = o.out;
    const int context = o.context;
    const double noise = o.noise;
    const int64_t curated = o.curated;
    const uint64_t seed = o.seed;
    const int64_t limit = o.limit;
    const std::string& command = o.command;
    CC_REQUIRE(!out.empty(), "prep: --out DIR is required");
    CC_REQUIRE(context >= 4 && context <= 1024, "prep: --context ", context, " out of range [4, 1024]");
    CC_REQUIRE(o.vocab >= BpeTokenizer::kNumByteSymbols + 2, "prep: --vocab ", o.vocab, " is below the ",
             BpeTokenizer::kNumByteSymbols + 2, " byte symbols and specials");
    CC_REQUIRE(noise >= 0 && noise < 1, "prep: --noise ", noise, " must be in [0, 1)");
    CC_REQUIRE(curated >= 0, "prep: --curated ", curated, " must be >= 0");
    CC_REQUIRE(limit == -1 || limit > 0, "prep: --limit ", limit, " must be positive");

    const std::string train_path = out + "/train.h5", test_path = out + "/test.h5",
                      tok_path = out + "/tokenizer.bpe", curated_path = out + "/curated.h5";
    std::vector<std::string> outputs = {train_path, test_path, tok_path};
    if (curated > 0) outputs.push_back(curated_path);
    for (const auto& p : outputs) {
        CC_REQUIRE(!io::path_exists(p), "prep: refusing to overwrite existing file ", p,
                 " (choose another --out or delete it)");
        CC_REQUIRE(!io::path_exists(p + ".tmp"), "prep: temporary file ", p + ".tmp", " exists (delete it)");
    }

    const auto t0 = Clock::now();
    const auto& classnames = fashion_mnist_classnames();
    Split train, test;
    train.raw = load_fashion_mnist(src, "train", limit);
    test.raw = load_fashion_mnist(src, "test", limit);
    const double t_read = seconds_since(t0);
    // Every input is checked before the first file (or folder) is written.
    CC_REQUIRE(curated <= int64_t(train.raw.images.count), "prep: --curated ", curated, " exceeds the ",
               train.raw.images.count, " training examples of ", train.raw.images_path,
               limit > 0 ? " (after --limit)" : "", "; nothing was written");

    for (Split* s : {&train, &test}) {
        s->labels.assign(s->raw.labels.begin(), s->raw.labels.end());
        s->stats = image_stats_batch(s->raw.images.pixels.data(), s->raw.images.count, 28, 28, 1);
    }
    const CaptionThresholds th = caption_thresholds(train.stats);
    train.captions = make_captions(train.stats, train.labels, classnames, th, seed, 0);
    test.captions = make_captions(test.stats, test.labels, classnames, th, seed, 1);
    const double t_cap = seconds_since(t0);

    const auto t_tok0 = Clock::now();
    const BpeTokenizer tok = !o.tokenizer.empty() ? BpeTokenizer::load(o.tokenizer)
                                                  : BpeTokenizer::train(train.captions, o.vocab);
    const double t_tok = seconds_since(t_tok0);

    // Noise: exactly round(noise * N) training captions, each replaced by the
    // caption of another (uniformly drawn) training image.
    const int64_t n_train = train.raw.images.count;
    std::vector<uint8_t> corrupted(size_t(n_train), 0);
    std::vector<std::string> noisy = train.captions;
    const int64_t n_noisy = n_train > 1 ? int64_t(noise * double(n_train) + 0.5) : 0;
    {
        const std::vector<int64_t> victims = sample_without_replacement(n_train, n_noisy, seed, kNoiseVictims);
        Philox rng(seed, RngPurpose::noise, kNoiseSources, 0);
        for (int64_t i : victims) {
            int64_t j = int64_t(rng.below(uint64_t(n_train - 1)));
            if (j >= i) ++j;
            noisy[size_t(i)] = train.captions[size_t(j)];
            corrupted[size_t(i)] = 1;
        }
    }

    auto contents = [&](const Split& s, const std::vector<std::string>& caps) {
        io::DatasetContents c;
        c.count = s.raw.images.count;
        c.image_size = 28;
        c.channels = 1;
        c.context_length = context;
        c.images = s.raw.images.pixels;
        c.captions = caps;
        c.labels = s.labels;
        c.classnames = classnames;
        c.tokens.resize(size_t(c.count) * size_t(context));
        tok.encode_batch_into(caps, context, c.tokens);
        return c;
    };
    int64_t truncated = 0;
    auto count_truncated = [&](const io::DatasetContents& c) {
        for (int64_t i = 0; i < c.count; ++i)
            if (c.tokens[size_t(i) * context + context - 1] != 0 &&
                int64_t(tok.tokenize(c.captions[size_t(i)]).size()) > context - 2)
                ++truncated;
    };
    auto attrs = [&](const std::string& split_desc) {
        io::DatasetAttributes a;
        a.tokenizer_id = tok.id_hex();
        a.source = "Fashion-MNIST " + split_desc;
        a.creation_command = command;
        a.extra = {{"caption_thresholds", th.to_string()},
                   {"caption_noise", std::to_string(noise)}};
        a.extra_int = {{"sot_id", tok.sot_id()}, {"eot_id", tok.eot_id()}};
        return a;
    };

    const auto t_w0 = Clock::now();
    io::make_directories(out, "--out");
    // The outputs appear one by one; if one fails (a full disk), the ones this run
    // already wrote are removed again, so that the same command can simply be run
    // again once there is space (they were new files: nothing of the user's is lost).
    std::vector<std::string> written;
    try {
    {
        const std::string tmp = tok_path + ".tmp";
        ::unlink(tmp.c_str());
        try {
            tok.save(tmp);
            io::publish_new_file(tmp, tok_path);
        } catch (...) {
            ::unlink(tmp.c_str());
            throw;
        }
        written.push_back(tok_path);
    }
    {
        io::DatasetContents c = contents(train, noisy);
        c.corrupted = corrupted;
        count_truncated(c);
        io::write_dataset(train_path, c, attrs("train (" + train.raw.images_path + ")"));
        written.push_back(train_path);
    }
    {
        io::DatasetContents c = contents(test, test.captions);
        count_truncated(c);
        auto a = attrs("test (" + test.raw.images_path + ")");
        a.extra[1].second = "0";
        io::write_dataset(test_path, c, a);
        written.push_back(test_path);
    }
    if (curated > 0) {
        const std::vector<int64_t> pick = sample_without_replacement(n_train, curated, seed, kCurated);
        Split sub;
        sub.raw.images.count = curated;
        sub.raw.images.rows = sub.raw.images.cols = 28;
        sub.raw.images.pixels.resize(size_t(curated) * 784);
        std::vector<std::string> caps;
        for (size_t k = 0; k < pick.size(); ++k) {
            std::copy_n(train.raw.images.pixels.begin() + pick[k] * 784, 784, sub.raw.images.pixels.begin() + k * 784);
            sub.labels.push_back(train.labels[size_t(pick[k])]);
            caps.push_back(train.captions[size_t(pick[k])]);
        }
        io::DatasetContents c = contents(sub, caps);
        auto a = attrs("train, clean curated subset of " + std::to_string(curated) + " (" + train.raw.images_path + ")");
        a.extra[1].second = "0";
        io::write_dataset(curated_path, c, a);
        written.push_back(curated_path);
    }
    } catch (...) {
        for (const std::string& f : written) ::unlink(f.c_str());
        throw;
    }
    const double t_write = seconds_since(t_w0);

    FashionMnistPrepSummary s;
    s.train_path = train_path;
    s.test_path = test_path;
    s.tokenizer_path = tok_path;
    s.curated_path = curated > 0 ? curated_path : "";
    s.train_rows = n_train;
    s.test_rows = test.raw.images.count;
    s.noisy = n_noisy;
    s.truncated = truncated;
    s.tokenizer_vocab = tok.vocab_size();
    s.tokenizer_id = tok.id_hex();
    s.thresholds = th.to_string();
    s.source_path = src;
    for (int64_t i = 0; i < std::min<int64_t>(3, n_train); ++i) {
        s.first_captions.push_back(noisy[size_t(i)]);
        s.first_classes.push_back(classnames[size_t(train.labels[size_t(i)])]);
        s.first_noisy.push_back(corrupted[size_t(i)] != 0);
    }
    s.seconds_read = t_read;
    s.seconds_captions = t_cap - t_read;
    s.seconds_tokenizer = t_tok;
    s.seconds_write = t_write;
    s.seconds_total = seconds_since(t0);
    return s;
}

}  // namespace curaclip::prep
