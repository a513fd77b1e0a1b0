#include "cli/cmd_prep.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/options.h"
#include "core/check.h"
#include "mpi/communicator.h"
#include "prep/fashion_mnist.h"
#include "prep/fashion_mnist_job.h"
#include "prep/source.h"

namespace curaclip {

int cmd_prep(int argc, char** argv, const Communicator* world) {
    const std::string usage =
        "usage: curaclip prep fashion-mnist --out DIR [options]\n"
        "Writes DIR/train.h5, DIR/test.h5, DIR/tokenizer.bpe (and DIR/curated.h5 with --curated)\n"
        "from the Fashion-MNIST idx files, with captions naming the class and attributes measured\n"
        "on the pixels (docs/data.md). Never overwrites existing files.";
    po::options_description desc("prep");
    desc.add_options()
        ("source", po::value<std::string>()->default_value(prep::kFashionMnistDir), "directory with the idx(.gz) files")
        ("out", po::value<std::string>(), "output directory (created if missing)")
        ("context", po::value<int>()->default_value(16), "token context length")
        ("vocab", po::value<int>()->default_value(1024), "BPE vocabulary size when training a tokenizer")
        ("tokenizer", po::value<std::string>(), "reuse this merges file instead of training one")
        ("noise", po::value<double>()->default_value(0.0), "fraction of training captions replaced by another image's")
        ("curated", po::value<int64_t>()->default_value(0), "also write curated.h5: N clean training examples")
        ("seed", po::value<int64_t>()->default_value(1234), "seed of captions, noise and curated subset")
        ("limit", po::value<int64_t>()->default_value(-1), "use only the first N examples of each split");

    // argv[1] is the source name; it stands in as "argv[0]" for the option parser.
    if (argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
        parse_options(2, argv, desc, usage);
        return 0;
    }
    CC_REQUIRE(argc >= 2 && argv[1][0] != '-', "prep: name the source first: `curaclip prep fashion-mnist --out DIR`");
    const std::string which = argv[1];
    const auto& kinds = prep::source_kinds();
    if (std::find(kinds.begin(), kinds.end(), which) != kinds.end()) {
        CC_REQUIRE(world != nullptr, "prep ", which, ": needs MPI (run through the curaclip binary)");
        return cmd_prep_sources(argc - 1, argv + 1, *world);
    }
    if (which != "fashion-mnist") {
        std::string known = "fashion-mnist";
        for (const auto& k : kinds) known += ", " + k;
        CC_USER_FAIL("prep: unknown source '", which, "' (supported: ", known, ")");
    }
    CC_REQUIRE(world == nullptr || world->size() == 1, "prep fashion-mnist runs on one process (it takes under a second); "
             "run it without mpirun");
    const ParsedOptions opts = parse_options(argc - 1, argv + 1, desc, usage);
    if (opts.help) return 0;
    const auto& vm = opts.vm;

    prep::FashionMnistPrepOptions o;
    CC_REQUIRE(vm.count("out"), "prep: --out DIR is required");
    o.source = vm["source"].as<std::string>();
    o.out = vm["out"].as<std::string>();
    o.context = vm["context"].as<int>();
    o.vocab = vm["vocab"].as<int>();
    if (vm.count("tokenizer")) {
        o.tokenizer = vm["tokenizer"].as<std::string>();
        CC_REQUIRE(!o.tokenizer.empty(),
                   "prep: --tokenizer is empty (name a merges file, or leave the option out to train one)");
    }
    o.noise = vm["noise"].as<double>();
    o.curated = vm["curated"].as<int64_t>();
    o.seed = uint64_t(vm["seed"].as<int64_t>());
    o.limit = vm["limit"].as<int64_t>();
    o.command = "curaclip";
    for (int i = 0; i < argc; ++i) o.command += std::string(" ") + argv[i];
    const prep::FashionMnistPrepSummary s = prep::prep_fashion_mnist(o);

    std::printf("prep fashion-mnist: %lld train, %lld test examples from %s\n", (long long)s.train_rows,
                (long long)s.test_rows, s.source_path.c_str());
    std::printf("  caption thresholds (from train): %s\n", s.thresholds.c_str());
    std::printf("  tokenizer %s: %d ids, id %s%s\n", s.tokenizer_path.c_str(), s.tokenizer_vocab, s.tokenizer_id.c_str(),
                o.tokenizer.empty() ? " (trained on the training captions)" : " (reused)");
    if (o.tokenizer.empty() && s.tokenizer_vocab < o.vocab)
        std::printf("  note: --vocab %d asked for more ids than the captions need: every word is already one token\n",
                    o.vocab);
    std::printf("  noise: %lld of %lld training captions replaced (%.4f), recorded in /corrupted\n",
                (long long)s.noisy, (long long)s.train_rows, s.train_rows ? double(s.noisy) / double(s.train_rows) : 0.0);
    if (s.truncated > 0)
        std::printf("  warning: %lld captions longer than the context %d were cut\n", (long long)s.truncated, o.context);
    std::printf("  wrote %s, %s, %s%s%s\n", s.train_path.c_str(), s.test_path.c_str(), s.tokenizer_path.c_str(),
                s.curated_path.empty() ? "" : ", ", s.curated_path.c_str());
    std::printf("  examples:\n");
    for (size_t i = 0; i < s.first_captions.size(); ++i)
        std::printf("    [%zu] %-11s \"%s\"%s\n", i, s.first_classes[i].c_str(), s.first_captions[i].c_str(),
                    s.first_noisy[i] ? " (noise)" : "");
    std::printf("  time: read %.2fs, captions %.2fs, tokenizer %.2fs, encode+write %.2fs, total %.2fs\n", s.seconds_read,
                s.seconds_captions, s.seconds_tokenizer, s.seconds_write, s.seconds_total);
    return 0;
}

}  // namespace curaclip
