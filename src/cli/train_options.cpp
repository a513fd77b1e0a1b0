#include "cli/train_options.h"

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/check.h"
#include "jest/config.h"

namespace fs = std::filesystem;

namespace curaclip {

namespace po = boost::program_options;

namespace {

// One option of `curaclip train`: its name, section group, help, its typed value
// with the default (`semantic`), and where its value goes in TrainOptions (`read`).
// The schema (train_options) and the reading (train_options_from) both iterate the
// one table below, so an option is spelled once.
struct TrainField {
    const char* key;
    int group;  // 0: [data] and [train], 1: [mode], 2: [jest]
    const char* help;
    std::function<po::value_semantic*()> semantic;
    std::function<void(TrainOptions&, const po::variable_value&)> read;
};

// An option of type T with a default, stored by `at`.
template <typename T>
TrainField field(const char* key, int group, T dflt, const char* help, std::function<T&(TrainOptions&)> at) {
    return {key, group, help, [dflt] { return po::value<T>()->default_value(dflt); },
            [at](TrainOptions& o, const po::variable_value& v) { at(o) = v.as<T>(); }};
}
// A required text option (no default).
TrainField required(const char* key, const char* help, std::function<std::string&(TrainOptions&)> at) {
    return {key, 0, help, [] { return po::value<std::string>()->required(); },
            [at](TrainOptions& o, const po::variable_value& v) { at(o) = v.as<std::string>(); }};
}
// A text option parsed by `set` (names, enumerations).
TrainField parsed(const char* key, int group, const char* dflt, const char* help,
                  std::function<void(TrainOptions&, const std::string&)> set) {
    return {key, group, help, [dflt] { return po::value<std::string>()->default_value(dflt); },
            [set](TrainOptions& o, const po::variable_value& v) { set(o, v.as<std::string>()); }};
}

using S = std::string;
const std::vector<TrainField>& train_fields() {
    static const std::vector<TrainField> fields = {
        required("data.train", "training dataset (HDF5, made by `curaclip prep`)",
                 [](TrainOptions& o) -> S& { return o.train_path; }),
        field<S>("data.eval", 0, "", "evaluation dataset (zero-shot + retrieval)",
                 [](TrainOptions& o) -> S& { return o.eval_path; }),
        field<S>("data.tokenizer", 0, "", "tokenizer merges file (default: tokenizer.bpe beside data.train)",
                 [](TrainOptions& o) -> S& { return o.tokenizer_path; }),
        required("train.out", "run folder: checkpoints, metrics.jsonl, config.ini",
                 [](TrainOptions& o) -> S& { return o.out_dir; }),
        field<S>("train.resume", 0, "",
                 "'latest' or a checkpoint file to continue from; the run's stored options are the defaults, and "
                 "options that would change the run (model, data, batch, seed, optimizer, schedule) are refused "
                 "(train.steps may grow)",
                 [](TrainOptions& o) -> S& { return o.resume; }),
        field<bool>("train.overwrite", 0, false, "allow a run folder that already holds a run",
                    [](TrainOptions& o) -> bool& { return o.overwrite; }),
        field<S>("train.backend", 0, "cpu", "cpu or cuda", [](TrainOptions& o) -> S& { return o.backend; }),
        field<int64_t>("train.batch_size", 0, 256, "global batch (pairs over all ranks)",
                       [](TrainOptions& o) -> int64_t& { return o.global_batch; }),
        field<int64_t>("train.steps", 0, 1000, "optimizer steps", [](TrainOptions& o) -> int64_t& { return o.steps; }),
        {"train.seed", 0, "seed of weights and data order", [] { return po::value<int64_t>()->default_value(0); },
         [](TrainOptions& o, const po::variable_value& v) {
             const int64_t seed = v.as<int64_t>();
             CC_REQUIRE(seed >= 0, "train.seed must be >= 0, got ", seed);
             o.seed = uint64_t(seed);
         }},
        field<double>("train.lr", 0, 5e-4, "peak learning rate", [](TrainOptions& o) -> double& { return o.optim.lr; }),
        field<double>("train.min_lr", 0, 0.0, "floor of the cosine decay",
                      [](TrainOptions& o) -> double& { return o.optim.min_lr; }),
        field<int64_t>("train.warmup", 0, 100, "linear warmup steps",
                       [](TrainOptions& o) -> int64_t& { return o.optim.warmup_steps; }),
        field<double>("train.weight_decay", 0, 0.2, "AdamW decoupled weight decay",
                      [](TrainOptions& o) -> double& { return o.optim.weight_decay; }),
        field<double>("train.beta1", 0, 0.9, "AdamW beta1", [](TrainOptions& o) -> double& { return o.optim.beta1; }),
        field<double>("train.beta2", 0, 0.98, "AdamW beta2", [](TrainOptions& o) -> double& { return o.optim.beta2; }),
        field<double>("train.eps", 0, 1e-6, "AdamW epsilon", [](TrainOptions& o) -> double& { return o.optim.eps; }),
        field<double>("train.grad_clip", 0, 1.0, "global gradient-norm clip (0 = off)",
                      [](TrainOptions& o) -> double& { return o.optim.grad_clip_norm; }),
        field<int64_t>("train.log_every", 0, 10, "progress line / metrics every N steps",
                       [](TrainOptions& o) -> int64_t& { return o.log_every; }),
        field<int64_t>("train.eval_every", 0, 0, "evaluate every N steps (0: only at the end)",
                       [](TrainOptions& o) -> int64_t& { return o.eval_every; }),
        field<int64_t>("train.checkpoint_every", 0, 0, "checkpoint every N steps (0: only at the end)",
                       [](TrainOptions& o) -> int64_t& { return o.checkpoint_every; }),
        field<double>("train.step_timeout", 0, 0.0,
                      "seconds without a finished step after which a rank ends the job with a report (a stopped or "
                      "hung rank would otherwise keep the others waiting for ever); 0 = auto: 1800 until the first "
                      "step, then max(300, 20 x the slowest step)",
                      [](TrainOptions& o) -> double& { return o.step_timeout; }),
        field<int64_t>("train.stop_at", 0, 0,
                       "checkpoint and exit after this step, to continue later with --train.resume latest (0: run to "
                       "the end)",
                       [](TrainOptions& o) -> int64_t& { return o.stop_at; }),
        field<int>("train.threads", 0, 0, "OpenMP/BLAS threads per rank (0: OMP_NUM_THREADS or all)",
                   [](TrainOptions& o) -> int& { return o.threads; }),
        field<double>("train.grad_bucket_mb", 0, 25.0,
                      "gradient all-reduce buckets in MiB, started during the backward pass (0: every parameter "
                      "after it)",
                      [](TrainOptions& o) -> double& { return o.grad_bucket_mb; }),
        field<int64_t>("train.max_skipped_steps", 0, 20,
                       "stop with an error after this many steps in a row skipped for a non-finite loss or gradient "
                       "(0: never)",
                       [](TrainOptions& o) -> int64_t& { return o.max_skipped_steps; }),
        field<S>("train.init_from", 0, "",
                 "start from this checkpoint's parameters (fresh optimizer, step 0), e.g. the MoDE seed model",
                 [](TrainOptions& o) -> S& { return o.init_from; }),
        field<bool>("train.init_optimizer", 0, false,
                    "with train.init_from: also take its AdamW moments, and continue their bias correction from its "
                    "step count (this run's learning-rate schedule and data; the MoDE experts of the released code)",
                    [](TrainOptions& o) -> bool& { return o.init_optimizer; }),
        field<S>("mode.assign", 1, "", "cluster side file of `curaclip cluster` (/assign/expert)",
                 [](TrainOptions& o) -> S& { return o.mode_assign; }),
        field<int64_t>("mode.expert", 1, -1,
                       "train expert c only: its cluster's rows plus mode.ood_share out-of-cluster rows (-1: all data)",
                       [](TrainOptions& o) -> int64_t& { return o.mode_expert; }),
        field<double>("mode.ood_share", 1, 0.02, "out-of-cluster rows added to an expert, as a share of its cluster's size",
                      [](TrainOptions& o) -> double& { return o.mode_ood_share; }),
        field<bool>("jest.enable", 2, false,
                    "select each batch from a super-batch by learnability (train.batch_size = the selected batch b)",
                    [](TrainOptions& o) -> bool& { return o.jest_enabled; }),
        field<double>("jest.filter_ratio", 2, 0.8, "f: super-batch B = b / (1 - f)",
                      [](TrainOptions& o) -> double& { return o.jest.filter_ratio; }),
        field<int>("jest.chunks", 2, 16, "N: the batch is drawn in N chunks",
                   [](TrainOptions& o) -> int& { return o.jest.chunks; }),
        field<double>("jest.temperature", 2, 1.0, "tau: chunks are drawn with probability ~ exp(score / tau)",
                      [](TrainOptions& o) -> double& { return o.jest.temperature; }),
        parsed("jest.score", 2, "learnability", "learnability, hard_learner or easy_reference",
               [](TrainOptions& o, const S& s) { o.jest.score = jest::parse_score_kind(s); }),
        parsed("jest.method", 2, "joint", "joint, independent_topk, independent_sampled or uniform",
               [](TrainOptions& o, const S& s) { o.jest.method = jest::parse_select_method(s); }),
        parsed("jest.mode", 2, "gathered", "gathered (every rank holds the B x B matrix) or sharded (row blocks stay put)",
               [](TrainOptions& o, const S& s) { o.jest.mode = jest::parse_select_mode(s); }),
        field<S>("jest.reference", 2, "", "checkpoint of the reference model",
                 [](TrainOptions& o) -> S& { return o.jest_reference; }),
        field<S>("jest.reference_cache", 2, "",
                 "its embeddings of the training set (`curaclip embed --what both`); empty: live reference forward "
                 "passes",
                 [](TrainOptions& o) -> S& { return o.jest_reference_cache; }),
        parsed("jest.score_resolution", 2, "full", "full, or low: score with the FlexiViT patch model.flexi_patch (Flexi-JEST)",
               [](TrainOptions& o, const S& s) {
                   CC_REQUIRE(s == "full" || s == "low", "jest.score_resolution: '", s, "' is not one of full, low");
                   o.jest_score_low_res = s == "low";
               }),
    };
    return fields;
}

}  // namespace

po::options_description train_options() {
    po::options_description groups[3] = {po::options_description("Training ([data] and [train] sections)"),
                                         po::options_description("MoDE: training a data expert ([mode] section)"),
                                         po::options_description("JEST: joint example selection ([jest] section)")};
    for (const TrainField& f : train_fields()) groups[f.group].add_options()(f.key, f.semantic(), f.help);
    groups[0].add(groups[1]).add(groups[2]);
    return groups[0];
}

TrainOptions train_options_from(const po::variables_map& vm) {
    TrainOptions o;
    for (const TrainField& f : train_fields()) f.read(o, vm[f.key]);
    if (o.tokenizer_path.empty()) o.tokenizer_path = (fs::path(o.train_path).parent_path() / "tokenizer.bpe").string();
    CC_REQUIRE(!o.out_dir.empty(), "train.out: the run folder must be named");
    o.optim.total_steps = o.steps;
    validate_train_options(o);
    return o;
}

}  // namespace curaclip
