#include "cli/train_options.h"

#include <filesystem>
#include <string>

#include "core/check.h"
#include "jest/config.h"

namespace fs = std::filesystem;

namespace curaclip {

namespace po = boost::program_options;

po::options_description train_options() {
    po::options_description d("Training ([data] and [train] sections)");
    d.add_options()
        ("data.train", po::value<std::string>()->required(), "training dataset (HDF5, made by `curaclip prep`)")
        ("data.eval", po::value<std::string>()->default_value(""), "evaluation dataset (zero-shot + retrieval)")
        ("data.tokenizer", po::value<std::string>()->default_value(""),
         "tokenizer merges file (default: tokenizer.bpe beside data.train)")
        ("train.out", po::value<std::string>()->required(), "run folder: checkpoints, metrics.jsonl, config.ini")
        ("train.resume", po::value<std::string>()->default_value(""),
         "'latest' or a checkpoint file to continue from; the run's stored options are the defaults, and options "
         "that would change the run (model, data, batch, seed, optimizer, schedule) are refused (train.steps may grow)")
        ("train.overwrite", po::value<bool>()->default_value(false), "allow a run folder that already holds a run")
        ("train.backend", po::value<std::string>()->default_value("cpu"), "cpu or cuda")
        ("train.batch_size", po::value<int64_t>()->default_value(256), "global batch (pairs over all ranks)")
        ("train.steps", po::value<int64_t>()->default_value(1000), "optimizer steps")
        ("train.seed", po::value<int64_t>()->default_value(0), "seed of weights and data order")
        ("train.lr", po::value<double>()->default_value(5e-4), "peak learning rate")
        ("train.min_lr", po::value<double>()->default_value(0.0), "floor of the cosine decay")
        ("train.warmup", po::value<int64_t>()->default_value(100), "linear warmup steps")
        ("train.weight_decay", po::value<double>()->default_value(0.2), "AdamW decoupled weight decay")
        ("train.beta1", po::value<double>()->default_value(0.9), "AdamW beta1")
        ("train.beta2", po::value<double>()->default_value(0.98), "AdamW beta2")
        ("train.eps", po::value<double>()->default_value(1e-6), "AdamW epsilon")
        ("train.grad_clip", po::value<double>()->default_value(1.0), "global gradient-norm clip (0 = off)")
        ("train.log_every", po::value<int64_t>()->default_value(10), "progress line / metrics every N steps")
        ("train.eval_every", po::value<int64_t>()->default_value(0), "evaluate every N steps (0: only at the end)")
        ("train.checkpoint_every", po::value<int64_t>()->default_value(0), "checkpoint every N steps (0: only at the end)")
        ("train.step_timeout", po::value<double>()->default_value(0.0),
         "seconds without a finished step after which a rank ends the job with a report (a stopped or hung rank "
         "would otherwise keep the others waiting for ever); 0 = auto: 1800 until the first step, then "
         "max(300, 20 x the slowest step)")
        ("train.stop_at", po::value<int64_t>()->default_value(0),
         "checkpoint and exit after this step, to continue later with --train.resume latest (0: run to the end)")
        ("train.threads", po::value<int>()->default_value(0), "OpenMP/BLAS threads per rank (0: OMP_NUM_THREADS or all)")
        ("train.grad_bucket_mb", po::value<double>()->default_value(25.0),
         "gradient all-reduce buckets in MiB, started during the backward pass (0: every parameter after it)")
        ("train.max_skipped_steps", po::value<int64_t>()->default_value(20),
         "stop with an error after this many steps in a row skipped for a non-finite loss or gradient (0: never)")
        ("train.init_from", po::value<std::string>()->default_value(""),
         "start from this checkpoint's parameters (fresh optimizer, step 0), e.g. the MoDE seed model");
    po::options_description m("MoDE: training a data expert ([mode] section)");
    m.add_options()
        ("mode.assign", po::value<std::string>()->default_value(""), "cluster side file of `curaclip cluster` (/assign/expert)")
        ("mode.expert", po::value<int64_t>()->default_value(-1),
         "train expert c only: its cluster's rows plus mode.ood_share out-of-cluster rows (-1: all data)")
        ("mode.ood_share", po::value<double>()->default_value(0.02),
         "out-of-cluster rows added to an expert, as a share of its cluster's size");
    d.add(m);
    po::options_description j("JEST: joint example selection ([jest] section)");
    j.add_options()
        ("jest.enable", po::value<bool>()->default_value(false),
         "select each batch from a super-batch by learnability (train.batch_size = the selected batch b)")
        ("jest.filter_ratio", po::value<double>()->default_value(0.8), "f: super-batch B = b / (1 - f)")
        ("jest.chunks", po::value<int>()->default_value(16), "N: the batch is drawn in N chunks")
        ("jest.temperature", po::value<double>()->default_value(1.0), "tau: chunks are drawn with probability ~ exp(score / tau)")
        ("jest.score", po::value<std::string>()->default_value("learnability"), "learnability, hard_learner or easy_reference")
        ("jest.method", po::value<std::string>()->default_value("joint"),
         "joint, independent_topk, independent_sampled or uniform")
        ("jest.mode", po::value<std::string>()->default_value("gathered"),
         "gathered (every rank holds the B x B matrix) or sharded (row blocks stay put)")
        ("jest.reference", po::value<std::string>()->default_value(""), "checkpoint of the reference model")
        ("jest.reference_cache", po::value<std::string>()->default_value(""),
         "its embeddings of the training set (`curaclip embed --what both`); empty: live reference forward passes")
        ("jest.score_resolution", po::value<std::string>()->default_value("full"),
         "full, or low: score with the FlexiViT patch model.flexi_patch (Flexi-JEST)");
    d.add(j);
    return d;
}

TrainOptions train_options_from(const po::variables_map& vm) {
    TrainOptions o;
    o.train_path = vm["data.train"].as<std::string>();
    o.eval_path = vm["data.eval"].as<std::string>();
    o.tokenizer_path = vm["data.tokenizer"].as<std::string>();
    if (o.tokenizer_path.empty()) o.tokenizer_path = (fs::path(o.train_path).parent_path() / "tokenizer.bpe").string();
    o.out_dir = vm["train.out"].as<std::string>();
    CC_REQUIRE(!o.out_dir.empty(), "train.out: the run folder must be named");
    o.resume = vm["train.resume"].as<std::string>();
    o.overwrite = vm["train.overwrite"].as<bool>();
    o.backend = vm["train.backend"].as<std::string>();
    o.global_batch = vm["train.batch_size"].as<int64_t>();
    o.steps = vm["train.steps"].as<int64_t>();
    const int64_t seed = vm["train.seed"].as<int64_t>();
    CC_REQUIRE(seed >= 0, "train.seed must be >= 0, got ", seed);
    o.seed = uint64_t(seed);
    o.optim.lr = vm["train.lr"].as<double>();
    o.optim.min_lr = vm["train.min_lr"].as<double>();
    o.optim.warmup_steps = vm["train.warmup"].as<int64_t>();
    o.optim.weight_decay = vm["train.weight_decay"].as<double>();
    o.optim.beta1 = vm["train.beta1"].as<double>();
    o.optim.beta2 = vm["train.beta2"].as<double>();
    o.optim.eps = vm["train.eps"].as<double>();
    o.optim.grad_clip_norm = vm["train.grad_clip"].as<double>();
    o.optim.total_steps = o.steps;
    o.log_every = vm["train.log_every"].as<int64_t>();
    o.eval_every = vm["train.eval_every"].as<int64_t>();
    o.checkpoint_every = vm["train.checkpoint_every"].as<int64_t>();
    o.threads = vm["train.threads"].as<int>();
    o.grad_bucket_mb = vm["train.grad_bucket_mb"].as<double>();
    o.stop_at = vm["train.stop_at"].as<int64_t>();
    o.step_timeout = vm["train.step_timeout"].as<double>();
    o.max_skipped_steps = vm["train.max_skipped_steps"].as<int64_t>();
    o.jest_enabled = vm["jest.enable"].as<bool>();
    o.jest.filter_ratio = vm["jest.filter_ratio"].as<double>();
    o.jest.chunks = vm["jest.chunks"].as<int>();
    o.jest.temperature = vm["jest.temperature"].as<double>();
    o.jest.score = jest::parse_score_kind(vm["jest.score"].as<std::string>());
    o.jest.method = jest::parse_select_method(vm["jest.method"].as<std::string>());
    o.jest.mode = jest::parse_select_mode(vm["jest.mode"].as<std::string>());
    o.jest_reference = vm["jest.reference"].as<std::string>();
    o.jest_reference_cache = vm["jest.reference_cache"].as<std::string>();
    const std::string res = vm["jest.score_resolution"].as<std::string>();
    CC_REQUIRE(res == "full" || res == "low", "jest.score_resolution: '", res, "' is not one of full, low");
    o.jest_score_low_res = res == "low";
    o.init_from = vm["train.init_from"].as<std::string>();
    o.mode_assign = vm["mode.assign"].as<std::string>();
    o.mode_expert = vm["mode.expert"].as<int64_t>();
    o.mode_ood_share = vm["mode.ood_share"].as<double>();
    validate_train_options(o);
    return o;
}

}  // namespace curaclip
