#include "train/trainer.h"

#include <fcntl.h>
#include <omp.h>
#include <unistd.h>
#include <cblas.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "backend/registry.h"
#include "eval/evaluate.h"
#include "interop/open_clip_weights.h"
#include "io/checkpoint.h"
#include "io/dataset_reader.h"
#include "io/durable_file.h"
#include "io/hdf5_file.h"
#include "io/loader.h"
#include "loss/contrastive_loss.h"
#include "mode/experts.h"
#include "model/clip_model.h"
#include "mpi/collectives.h"
#include "tokenizer/bpe_tokenizer.h"
#include "optim/lr_schedule.h"
#include "train/metrics_log.h"
#include "train/preemption.h"
#include "train/resume_check.h"
#include "train/jest_step.h"
#ifdef CURACLIP_HAVE_CUDA
#include "cuda/cuda_backend.h"
#include "cuda/nccl_collectives.h"
#endif
#include "train/train_step.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace curaclip {

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

void validate_train_options(const TrainOptions& o) {
    CC_REQUIRE(o.global_batch > 0, "train.batch_size must be positive, got ", o.global_batch);
    CC_REQUIRE(o.steps > 0, "train.steps must be positive, got ", o.steps);
    CC_REQUIRE(o.log_every > 0, "train.log_every must be positive, got ", o.log_every);
    CC_REQUIRE(o.eval_every >= 0, "train.eval_every must be >= 0 (0: only at the end), got ", o.eval_every);
    CC_REQUIRE(o.checkpoint_every >= 0, "train.checkpoint_every must be >= 0 (0: only at the end), got ",
               o.checkpoint_every);
    CC_REQUIRE(o.stop_at >= 0, "train.stop_at must be >= 0, got ", o.stop_at);
    CC_REQUIRE(std::isfinite(o.step_timeout) && o.step_timeout >= 0,
               "train.step_timeout must be a number of seconds >= 0 (0 = auto), got ", o.step_timeout);
    CC_REQUIRE(o.threads >= 0 && o.threads <= 4096, "train.threads must be in [0, 4096] (0: OMP_NUM_THREADS or all), got ",
               o.threads);
    CC_REQUIRE(std::isfinite(o.grad_bucket_mb) && o.grad_bucket_mb >= 0 && o.grad_bucket_mb <= 1e6,
               "train.grad_bucket_mb must be in [0, 1e6] MiB, got ", o.grad_bucket_mb);
    CC_REQUIRE(o.max_skipped_steps >= 0, "train.max_skipped_steps must be >= 0 (0: never stop), got ",
               o.max_skipped_steps);
    // The optimizer, option by option (OptimizerConfig::validate repeats the basic
    // checks without the option names). AdamW moves every weight by about lr per
    // step whatever the gradient's size, so an lr above 1 cannot train anything: it
    // only turns every later step into "update skipped".
    const OptimizerConfig& p = o.optim;
    CC_REQUIRE(std::isfinite(p.lr) && p.lr >= 0.0 && p.lr <= 1.0, "train.lr = ", p.lr,
               " is outside [0, 1] (AdamW moves each weight by about lr per step; CLIP recipes use 1e-4 .. 5e-3)");
    CC_REQUIRE(std::isfinite(p.min_lr) && p.min_lr >= 0.0 && p.min_lr <= p.lr, "train.min_lr = ", p.min_lr,
               " must be in [0, train.lr = ", p.lr, "]");
    CC_REQUIRE(p.warmup_steps >= 0 && p.warmup_steps <= o.steps, "train.warmup = ", p.warmup_steps,
               " must be in [0, train.steps = ", o.steps, "]");
    CC_REQUIRE(std::isfinite(p.weight_decay) && p.weight_decay >= 0.0 && p.lr * p.weight_decay < 1.0,
               "train.weight_decay = ", p.weight_decay, " must be >= 0 with train.lr * train.weight_decay < 1 "
               "(each step multiplies the weights by 1 - lr * weight_decay), train.lr = ", p.lr);
    CC_REQUIRE(std::isfinite(p.beta1) && p.beta1 >= 0.0 && p.beta1 < 1.0, "train.beta1 must be in [0, 1), got ", p.beta1);
    CC_REQUIRE(std::isfinite(p.beta2) && p.beta2 >= 0.0 && p.beta2 < 1.0, "train.beta2 must be in [0, 1), got ", p.beta2);
    CC_REQUIRE(std::isfinite(p.eps) && p.eps > 0.0 && p.eps <= 1.0, "train.eps must be in (0, 1], got ", p.eps);
    CC_REQUIRE(std::isfinite(p.grad_clip_norm) && p.grad_clip_norm >= 0.0,
               "train.grad_clip must be >= 0 (0 = off), got ", p.grad_clip_norm);
    p.validate();
    CC_REQUIRE(std::isfinite(o.jest.filter_ratio) && o.jest.filter_ratio >= 0.0 && o.jest.filter_ratio < 1.0,
               "jest.filter_ratio must be in [0, 1), got ", o.jest.filter_ratio);
    CC_REQUIRE(o.jest.chunks >= 1, "jest.chunks must be >= 1, got ", o.jest.chunks);
    CC_REQUIRE(std::isfinite(o.jest.temperature) && o.jest.temperature > 0.0,
               "jest.temperature must be a positive finite number, got ", o.jest.temperature);
    CC_REQUIRE(o.mode_expert >= -1, "mode.expert must be an expert id >= 0 (or -1: all data), got ", o.mode_expert);
    CC_REQUIRE(std::isfinite(o.mode_ood_share) && o.mode_ood_share >= 0 && o.mode_ood_share <= 1,
               "mode.ood_share must be in [0, 1], got ", o.mode_ood_share);
    CC_REQUIRE(o.mode_expert < 0 || !o.mode_assign.empty(), "mode.expert = ", o.mode_expert,
               " needs mode.assign (the cluster side file of `curaclip cluster`)");
}

namespace {
using Clock = std::chrono::steady_clock;

// A run folder holds a run when it has a config.ini, checkpoints or metrics.
bool holds_run(const std::string& dir) {
    return fs::exists(fs::path(dir) / "config.ini") || fs::exists(fs::path(dir) / "latest") ||
           fs::exists(fs::path(dir) / "metrics.jsonl");
}

// The marker of a finished run, <train.out>/finished ("step N" and the final
// checkpoint's name), written by rank 0 after the final checkpoint and the final
// evaluation's metrics line. A resume of a finished run does nothing (a scheduler may
// start a job again: a requeue, a signal during the final evaluation), so the run is
// never trained on and metrics.jsonl never gets a second final evaluation line.
constexpr const char* kFinishedMarker = "finished";

// The step recorded in dir's marker; -1 when there is no marker (or no step in it).
int64_t finished_step(const std::string& dir) {
    std::ifstream f(fs::path(dir) / kFinishedMarker);
    std::string word;
    long long step = -1;
    if (f && f >> word >> step && word == "step" && step >= 0) return step;
    return f.is_open() ? 0 : -1;  // a marker without a readable step still marks the run finished
}

// Whether dir/metrics.jsonl already holds the evaluation line of `step` (the form
// run_eval writes: {"step": N, "eval": true, ...}).
bool metrics_has_eval(const std::string& dir, int64_t step) {
    std::ifstream f(fs::path(dir) / "metrics.jsonl");
    const std::string head = "{\"step\": " + std::to_string(step) + ", \"eval\": true";
    for (std::string line; std::getline(f, line);)
        if (line.rfind(head, 0) == 0) return true;
    return false;
}

std::string format_eta(double seconds) {
    char buf[32];
    const long s = long(seconds + 0.5);
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    return buf;
}

// Every rank throws the same Error when rank 0 found one (its text travels along),
// so a problem only rank 0 can see (its file system) ends every rank the same way.
void agree_on_error(const Communicator& comm, const std::string& root_error) {
    int64_t n = comm.rank() == 0 ? int64_t(root_error.size()) : 0;
    if (comm.size() > 1) comm.broadcast(&n, 1, 0);
    if (n == 0) return;
    std::vector<uint8_t> text(root_error.begin(), root_error.end());
    text.resize(size_t(n));
    if (comm.size() > 1) comm.broadcast(text.data(), text.size(), 0);
    CC_USER_FAIL(std::string(text.begin(), text.end()));
}

// Creates the run folder (if missing) and a probe file in it, then removes the
// probe: a read-only or full file system, a path through a file or missing rights
// are found before step 1, not at the first checkpoint. "" when writable.
std::string probe_run_folder(const std::string& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return "train.out " + dir + ": cannot create the run folder (" + ec.message() + ")";
    if (!fs::is_directory(dir, ec)) return "train.out " + dir + " exists and is not a folder";
    const std::string probe = (fs::path(dir) / (".write_probe_" + std::to_string(::getpid()))).string();
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return "train.out " + dir + " is not writable (" + std::strerror(errno) +
               "): checkpoints and metrics could not be saved; choose another train.out";
    const char byte = 0;
    const bool ok = ::write(fd, &byte, 1) == 1 && ::fsync(fd) == 0;
    const int err = errno;
    ::close(fd);
    ::unlink(probe.c_str());
    if (!ok)
        return "train.out " + dir + ": writing a probe file failed (" + std::strerror(err) +
               "): checkpoints could not be saved; choose another train.out";
    return "";
}

// Writes text to path (replacing it), checking every step; throws naming the path.
void write_text_file(const std::string& path, const std::string& text) {
    io::write_text_file(path, text, /*replace=*/true);
}

// A name in dir that does not exist yet: base + ext, else base_2 + ext, ...
std::string fresh_name(const std::string& dir, const std::string& base, const std::string& ext) {
    for (int i = 1;; ++i) {
        std::string name = base;
        if (i > 1) {
            name += '_';
            name += std::to_string(i);
        }
        name += ext;
        if (!fs::exists(fs::path(dir) / name)) return (fs::path(dir) / name).string();
    }
}

// Whether two paths name one file (a relative path and its absolute form, a link).
bool same_file(const std::string& a, const std::string& b) {
    std::error_code ec;
    if (fs::exists(a, ec) && fs::exists(b, ec)) return fs::equivalent(a, b, ec);
    std::error_code e1, e2;
    return fs::weakly_canonical(a, e1) == fs::weakly_canonical(b, e2);
}

// A side file (embeddings, MoDE assignment) records the dataset it was made from
// (its path and io::dataset_fingerprint) and the model that made it: used with
// another dataset or model of the same size, its rows would silently belong to other
// examples. The fingerprint decides (a copy staged elsewhere is the same data); a
// side file without one is compared by path, and only a note is printed. `option`
// names the option.
void require_side_file_source(const std::string& option, const std::string& side_file, const std::string& dataset,
                              const std::string& dataset_fp, const std::string& stored_dataset,
                              const std::string& stored_fp, const std::string& model, const std::string& stored_model,
                              bool root) {
    if (!stored_fp.empty()) {
        CC_REQUIRE(stored_fp == dataset_fp, option, ": ", side_file, " was made from the dataset ", stored_dataset,
                   " (fingerprint ", stored_fp, "), but data.train ", dataset, " holds other data (fingerprint ",
                   dataset_fp, "): its rows would belong to other examples; make it again from data.train");
    } else if (root && !stored_dataset.empty() && !same_file(stored_dataset, dataset)) {
        std::printf("note: %s: %s was made from %s, data.train is %s (the file records no fingerprint to compare; "
                    "make sure it is the same data)\n",
                    option.c_str(), side_file.c_str(), stored_dataset.c_str(), dataset.c_str());
    }
    CC_REQUIRE(stored_model.empty() || model.empty() || same_file(stored_model, model), option, ": ", side_file,
               " was made by the model ", stored_model, ", but jest.reference is ", model,
               " (embed data.train with the reference: curaclip embed --checkpoint <jest.reference> --what both)");
}

// The checkpoint's stored option record and model shape (its config and
// model_config attributes); empty strings where it has none.
std::pair<std::string, std::string> checkpoint_options(const std::string& path) {
    const H5File f(path, H5File::Mode::read);
    return {f.has_attr("/", "config") ? f.attr_string("/", "config") : std::string(),
            f.has_attr("/", "model_config") ? f.attr_string("/", "model_config") : std::string()};
}

// Whether every parameter value is finite (one host pass; only used when steps were skipped).
bool parameters_finite(ParameterSet& ps) {
    for (size_t i = 0; i < ps.size(); ++i)
        for (double v : ps.values_to_host(i))
            if (!std::isfinite(v)) return false;
    return true;
}

// Heads and activation are not in the parameter shapes: a recipe that differs from
// init_from's would silently compute another model from the same weights. (A
// safetensors file without a description of its own says nothing about them: the
// recipe decides.)
void require_init_architecture(const std::string& path, const ModelConfig& cfg) {
    if (is_safetensors_path(path) && !interop::safetensors_describes_model(path)) return;
    std::string list;
    for (const std::string& d : hidden_shape_differences(checkpoint_model_config(path), path, cfg, "the recipe"))
        list += "\n  " + d;
    CC_REQUIRE(list.empty(), "train.init_from ", path, " is another architecture than the recipe:", list,
               "\nGive the recipe the checkpoint's values (e.g. --model.activation, --model.vision_heads)");
}

// Loads init_from's parameters into `model`. A checkpoint of the other contrastive
// loss (a CLIP softmax run into a SigLIP model, as open_clip users do, or back) is
// read into a host model of its own shape and copied over by name: logit_bias keeps
// the recipe's initial value (-10, init_weights) or is dropped. Returns what was done
// beyond a plain load ("" for a plain load).
std::string load_initial_parameters(const std::string& path, ClipModel& model) {
    const ModelConfig& cfg = model.config();
    const ModelConfig stored = checkpoint_model_config(path);
    if (stored.sigmoid_loss == cfg.sigmoid_loss) {
        load_checkpoint(path, model.params(), /*with_optimizer=*/false);
        return "";
    }
    ModelConfig other = cfg;
    other.sigmoid_loss = stored.sigmoid_loss;
    auto host = make_backend("cpu");
    ClipModel source(*host, other, 1);
    load_checkpoint(path, source.params(), /*with_optimizer=*/false);
    Backend& be = model.backend();
    for (auto& p : model.params().all()) {
        const Parameter* q = source.params().find(p.name);
        if (!q) continue;  // logit_bias of a sigmoid model from a softmax checkpoint
        const size_t i = size_t(q - source.params().all().data());
        const std::vector<double> v = source.params().values_to_host(i);
        be.upload(p.value, v.data());
    }
    double t = 0.0;
    be.download(&t, model.logit_scale().value);
    char buf[512];
    if (cfg.sigmoid_loss) {
        double bias = 0.0;
        be.download(&bias, model.logit_bias()->value);
        std::snprintf(buf, sizeof buf,
                      "%s was trained with the softmax (CLIP) loss and has no logit_bias: logit_bias starts at %g as "
                      "the sigmoid (SigLIP) recipe initialises it; logit_scale kept from the checkpoint (t = %.4f, "
                      "exp(t) = %.2f)",
                      path.c_str(), bias, t, std::exp(std::min(t, kMaxLogitScale)));
    } else {
        std::snprintf(buf, sizeof buf,
                      "%s was trained with the sigmoid (SigLIP) loss: its logit_bias is dropped (the softmax loss has "
                      "none); logit_scale kept from the checkpoint (t = %.4f)",
                      path.c_str(), t);
    }
    return buf;
}
}  // namespace

std::vector<int64_t> training_rows(const TrainOptions& opt, int64_t n_dataset, const std::string& fingerprint, bool root) {
    if (opt.mode_expert < 0) return opt.rows;
    CC_CHECK(opt.rows.empty(), "train: give either explicit rows or mode.expert, not both");
    const mode::Assignment a = mode::read_assignment(opt.mode_assign, /*with_rows=*/true, "mode.assign");
    if (!fingerprint.empty())
        require_side_file_source("mode.assign", opt.mode_assign, opt.train_path, fingerprint, a.source_dataset,
                                 a.source_fingerprint, "", "", root);
    CC_REQUIRE(a.n_examples == n_dataset, "mode.assign: ", opt.mode_assign, " assigns ", a.n_examples,
             " examples but data.train ", opt.train_path, " has ", n_dataset,
             ": the side file belongs to another dataset");
    CC_REQUIRE(opt.mode_expert < a.n_experts, "mode.expert = ", opt.mode_expert, " but ", opt.mode_assign, " has ",
             a.n_experts, " experts (0..", a.n_experts - 1, ")");
    return mode::expert_rows(a.expert, a.n_experts, opt.mode_expert, opt.mode_ood_share, opt.seed);
}

int run_training(const TrainOptions& opt, const ModelConfig& model_cfg, const Communicator& comm) {
    const bool root = comm.rank() == 0;
    const int P = comm.size();
    validate_train_options(opt);
    model_cfg.validate();
    CC_REQUIRE(opt.global_batch % P == 0, "train.batch_size (", opt.global_batch,
               ") must be divisible by the number of ranks (", P, ")");
    if (opt.threads > 0) {
        omp_set_num_threads(opt.threads);
        openblas_set_num_threads(opt.threads);
    }
    const bool resuming = !opt.resume.empty();
    // A finished run is not resumed (its marker; decided on rank 0): status 0, nothing
    // written, so a scheduler's requeue of a finished job does nothing. Only a resume to
    // more steps goes on; a new run there is refused below, as for any run folder in use.
    int64_t finished_at = root && resuming && !opt.overwrite ? finished_step(opt.out_dir) : -1;
    comm.allreduce_max(&finished_at, 1);
    if (finished_at >= 0 && opt.steps <= finished_at) {
        if (root) {
            std::printf("run folder %s holds a finished run (step %lld, %s): nothing to do; to train further "
                        "--train.resume latest --train.steps N (N > %lld)\n",
                        opt.out_dir.c_str(), (long long)finished_at,
                        (fs::path(opt.out_dir) / kFinishedMarker).string().c_str(), (long long)finished_at);
            std::fflush(stdout);
        }
        return 0;
    }
    // Refuse to clobber a finished or running experiment; decided on rank 0, agreed by all.
    int64_t refuse = 0;
    if (root && !resuming && !opt.overwrite && holds_run(opt.out_dir)) refuse = 1;
    comm.allreduce_max(&refuse, 1);
    CC_REQUIRE(!refuse, "run folder ", opt.out_dir,
               " already holds a run (config.ini / checkpoints / metrics.jsonl): choose a new train.out, resume it with "
               "--train.resume latest, or pass --train.overwrite true");

    // ---- a resume continues the run it resumes (resume_check.h) ----
    std::string resume_path;
    std::vector<OptionChange> resume_report;
    int64_t resume_step = 0;
    if (resuming) {
        resume_path = resolve_checkpoint(opt.out_dir, opt.resume);
        CC_REQUIRE(!is_safetensors_path(resume_path), "--train.resume: ", resume_path,
                   " holds open_clip weights only (safetensors): no optimizer state or data position to resume; "
                   "start a run from them with --train.init_from ", resume_path);
        const auto [run_config, run_model] = checkpoint_options(resume_path);
        {
            const H5File f(resume_path, H5File::Mode::read);
            resume_step = f.attr_i64("/", "step");
        }
        // Resuming from an earlier checkpoint of this run folder would write over the
        // later ones (same names, another trajectory): refused, naming them.
        if (fs::is_directory(opt.out_dir)) {
            std::vector<std::string> later;
            for (const auto& e : fs::directory_iterator(opt.out_dir)) {
                const std::string n = e.path().filename().string();
                long long k = -1;
                char tail[4] = {0};
                if (std::sscanf(n.c_str(), "step_%lld.h%2s", &k, tail) == 2 && std::string(tail) == "5" &&
                    n == checkpoint_name(k) && k > resume_step && !fs::equivalent(e.path(), resume_path))
                    later.push_back(n);
            }
            std::sort(later.begin(), later.end());
            std::string names;
            for (const std::string& n : later) names += (names.empty() ? "" : ", ") + n;
            CC_REQUIRE(later.empty(), "--train.resume: ", resume_path, " is at step ", resume_step, " but ",
                       opt.out_dir, " holds later checkpoints of the run (", names,
                       "): resuming from it would write over them. Resume from latest, or, to go back to step ",
                       resume_step, " on purpose, move those checkpoints out of the folder first");
        }
        const std::string stored_model =
            run_model.empty() ? std::string() : model_config_to_ini(model_config_from_ini(run_model, resume_path));
        std::string refused;
        for (const OptionChange& c : resume_changes(run_config, stored_model, opt.config_text, model_config_to_ini(model_cfg))) {
            if (c.key == "train.resume" || c.key == "train.overwrite") continue;  // what every resume says
            if (c.key == "train.steps" && std::strtoll(c.new_value.c_str(), nullptr, 10) <
                                              std::strtoll(c.run_value.c_str(), nullptr, 10)) {
                refused += "\n  train.steps: the run has " + c.run_value + ", this command " + c.new_value +
                           " (a resume may lengthen the schedule, not shorten it: to stop earlier give "
                           "--train.stop_at " + c.new_value + ")";
                continue;
            }
            if (c.allowed) resume_report.push_back(c);
            else refused += "\n  " + c.key + ": the run has " + c.run_value + ", this command " + c.new_value;
        }
        CC_REQUIRE(refused.empty(), "--train.resume: ", resume_path,
                   " would continue as another run; these options differ from the run's:", refused,
                   "\nA resume keeps the model, data, batch, seed, optimizer and schedule (only train.steps may "
                   "change); leave these options out (the run's stored options are the defaults) or start a new run "
                   "in another train.out (--train.init_from ", resume_path, " starts from its weights)");
        CC_REQUIRE(resume_step <= opt.steps, "--train.resume: ", resume_path, " is at step ", resume_step,
                   ", past train.steps = ", opt.steps, " (give train.steps >= ", resume_step, ")");
        if (resume_step == opt.steps) {
            // Trained to the end, not marked finished: stopped at the last step or during
            // the final evaluation. Done if that evaluation's line is already in
            // metrics.jsonl (or there is none to make); else it is made below (no steps).
            int64_t logged = root && (opt.eval_path.empty() || metrics_has_eval(opt.out_dir, opt.steps)) ? 1 : 0;
            comm.allreduce_max(&logged, 1);
            if (logged) {
                if (root) {
                    write_text_file((fs::path(opt.out_dir) / kFinishedMarker).string(),
                                    "step " + std::to_string(resume_step) + "\ncheckpoint " +
                                        fs::path(resume_path).filename().string() + "\n");
                    std::printf("resume: %s is at step %lld = train.steps: the run has finished, nothing to do (give a "
                                "larger --train.steps to train further)\n",
                                resume_path.c_str(), (long long)resume_step);
                }
                return 0;
            }
            if (root)
                std::printf("resume: %s is at step %lld = train.steps; the final evaluation is missing: evaluating\n",
                            resume_path.c_str(), (long long)resume_step);
        }
    }

    // ---- inputs, before anything is written ----
    const BpeTokenizer tok = BpeTokenizer::load(opt.tokenizer_path);
    CC_REQUIRE(tok.vocab_size() <= model_cfg.vocab_size, "data.tokenizer ", opt.tokenizer_path, " has ",
               tok.vocab_size(), " ids but model.vocab_size is ", model_cfg.vocab_size);
    io::LoaderOptions lo;
    lo.expect.image_size = model_cfg.image_size;
    lo.expect.channels = model_cfg.channels;
    lo.expect.context_length = model_cfg.context_length;
    lo.expect.tokenizer_id = tok.id_hex();
    lo.expect.eot_id = tok.eot_id();
    if (!opt.eval_path.empty()) {
        // Opened now, with the checks evaluation makes, so that a missing or wrong
        // evaluation set stops the run before step 1 instead of after the last one.
        try {
            io::DatasetExpect e = lo.expect;
            const io::DatasetReader eval_set(opt.eval_path, e);
            CC_REQUIRE(eval_set.size() > 0, opt.eval_path, " has no rows");
            io::check_labels(eval_set);
        } catch (const Error& e) {
            CC_USER_FAIL("data.eval: ", e.what());
        }
    }
    // With JEST the loader reads super-batches; the model is laid out for this rank's
    // share of one (scoring) and trains on its share of the selected batch. B is the
    // same on any number of ranks (never rounded to a multiple of them).
    jest::JestConfig jcfg = opt.jest;
    jcfg.loss = model_cfg.sigmoid_loss ? LossKind::sigmoid : LossKind::softmax;
    jcfg.seed = opt.seed;
    int64_t super_batch = opt.global_batch;
    if (opt.jest_enabled) {
        super_batch = jest::super_batch_for(opt.global_batch, opt.jest.filter_ratio);
        jcfg.batch = opt.global_batch;
        jcfg.validate(super_batch, P);
    }
    const int64_t local_batch = opt.global_batch / P;
    // Multi-resolution rows are taken per local batch: refuse a split whose rounding
    // would put another number of rows at the low resolution than one rank would.
    if (model_cfg.flexi() && P > 1) {
        const int64_t per_rank = model_cfg.flexi_rows(local_batch), whole = model_cfg.flexi_rows(opt.global_batch);
        CC_REQUIRE(per_rank * P == whole, "model.flexi_fraction = ", model_cfg.flexi_fraction, " of the local batch ",
                   local_batch, " (train.batch_size ", opt.global_batch, " / ", P, " ranks) rounds to ", per_rank,
                   " rows per rank, ", per_rank * P, " in all, but to ", whole,
                   " on one rank: choose train.batch_size or model.flexi_fraction so that flexi_fraction * batch_size / ranks "
                   "is a whole number");
    }
    if (opt.mode_expert >= 0 || !opt.rows.empty()) {
        const io::DatasetReader train_set(opt.train_path, lo.expect);
        lo.rows = training_rows(opt, train_set.size(),
                                opt.mode_expert >= 0 ? io::dataset_fingerprint(train_set) : std::string(), root);
        if (opt.mode_expert >= 0)
            CC_REQUIRE(int64_t(lo.rows.size()) >= super_batch, "mode.expert = ", opt.mode_expert, " has ", lo.rows.size(),
                       " examples (cluster + out-of-cluster share), fewer than one global batch of ", super_batch);
    }
    std::string init_path;
    if (!resuming && !opt.init_from.empty()) {
        init_path = opt.init_from;
        CC_REQUIRE(fs::exists(init_path), "train.init_from: ", init_path, " does not exist");
        if (fs::is_directory(init_path)) init_path = resolve_checkpoint(init_path, "latest");
    }
    io::Loader loader(opt.train_path, super_batch, comm, opt.seed, lo);
    if (!init_path.empty()) {
        require_checkpoint_tokenizer(init_path, "train.init_from", opt.train_path, tok.id_hex());
        require_init_architecture(init_path, model_cfg);
    }
    // JEST's reference and its cached embeddings: the reference must read this data's
    // token ids, and the cache must be of this dataset, made by this reference.
    std::string jest_reference = opt.jest_reference;
    if (opt.jest_enabled && opt.jest.score != jest::ScoreKind::hard_learner && !jest_reference.empty()) {
        CC_REQUIRE(fs::exists(jest_reference), "jest.reference: ", jest_reference, " does not exist");
        if (fs::is_directory(jest_reference)) jest_reference = resolve_checkpoint(jest_reference, "latest");
        require_checkpoint_tokenizer(jest_reference, "jest.reference", opt.train_path, tok.id_hex());
        if (!opt.jest_reference_cache.empty()) {
            CC_REQUIRE(fs::exists(opt.jest_reference_cache), "jest.reference_cache: ", opt.jest_reference_cache,
                       " does not exist");
            const H5File f(opt.jest_reference_cache, H5File::Mode::read);
            auto attr = [&](const char* k) { return f.has_attr("/", k) ? f.attr_string("/", k) : std::string(); };
            require_side_file_source("jest.reference_cache", opt.jest_reference_cache, opt.train_path,
                                     io::dataset_fingerprint(io::DatasetReader(opt.train_path, lo.expect)),
                                     attr("source_dataset"), attr("source_fingerprint"), jest_reference,
                                     attr("checkpoint"), root);
            const std::string tid = attr("tokenizer_id");
            CC_REQUIRE(tid.empty() || tid == tok.id_hex(), "jest.reference_cache: ", opt.jest_reference_cache,
                       " holds caption embeddings of token ids of tokenizer ", tid, ", data.tokenizer is ",
                       tok.id_hex());
        }
    }
    // What the checkpoints record of data.train (rank 0 writes them).
    const std::string train_fingerprint =
        root ? io::dataset_fingerprint(io::DatasetReader(opt.train_path, lo.expect)) : std::string();
    if (resuming) {
        // The same path may hold another file now (a re-run of prep, a copy): the run
        // continues only on the data it was trained on (as far as the checkpoint
        // recorded it: its tokenizer and row count).
        const CheckpointState was = checkpoint_provenance(resume_path);
        CC_REQUIRE(was.tokenizer_id.empty() || was.tokenizer_id == tok.id_hex(), "--train.resume: ", resume_path,
                   " was trained with tokenizer ", was.tokenizer_id, ", but data.tokenizer ", opt.tokenizer_path,
                   " is tokenizer ", tok.id_hex(), ": the file at that path has changed since; a resume continues on "
                   "the run's own data");
        CC_REQUIRE(was.train_rows < 0 || was.train_rows == loader.dataset_size(), "--train.resume: ", resume_path,
                   " was trained on ", was.train_rows, " rows of data.train ", opt.train_path, ", which now has ",
                   loader.dataset_size(), ": the file at that path has changed since; a resume continues on the "
                   "run's own data (restore it, or start a new run with --train.init_from ", resume_path, ")");
        int64_t changed = root && !was.train_fingerprint.empty() && was.train_fingerprint != train_fingerprint ? 1 : 0;
        comm.allreduce_max(&changed, 1);
        CC_REQUIRE(!changed, "--train.resume: ", resume_path, " was trained on data.train ", opt.train_path,
                   " with fingerprint ", was.train_fingerprint, ", but that file now holds other data (fingerprint ",
                   train_fingerprint.empty() ? std::string("see rank 0") : train_fingerprint,
                   "): the file at that path has changed since; a resume continues on the run's own data");
    }

    // The run folder must take files before any step runs.
    agree_on_error(comm, root ? probe_run_folder(opt.out_dir) : std::string());

    // One process per GPU: the node-local rank picks the device; gradients and
    // embeddings then move over NCCL instead of MPI.
#ifdef CURACLIP_HAVE_CUDA
    if (opt.backend == "cuda") cuda::select_device_for_local_rank(comm.local_rank().rank);
#endif
    auto be = make_backend(opt.backend);
    ClipModel model(*be, model_cfg, super_batch / P);
    model.init_weights(opt.seed);
    model.set_batch(local_batch);
#ifdef CURACLIP_HAVE_CUDA
    auto coll = opt.backend == "cuda" ? cuda::make_nccl_collectives(comm, *be) : make_mpi_collectives(comm, *be);
#else
    auto coll = make_mpi_collectives(comm, *be);
#endif
    ContrastiveLoss loss(*be, model_cfg.sigmoid_loss ? LossKind::sigmoid : LossKind::softmax, local_batch,
                         model_cfg.embed_dim, *coll);
    TrainStep step(model, loss, *coll, size_t(opt.grad_bucket_mb * double(1 << 20)));
    AdamW adamw(model.params(), opt.optim);
    std::unique_ptr<jest::JestSelector> selector;
    std::unique_ptr<jest::ReferenceSource> reference;
    std::unique_ptr<JestTrainStep> jest_step;
    if (opt.jest_enabled) {
        selector = std::make_unique<jest::JestSelector>(*be, *coll, P > 1 ? &comm : nullptr, jcfg, super_batch,
                                                        model_cfg.embed_dim);
        if (opt.jest.score != jest::ScoreKind::hard_learner)
            reference = std::make_unique<jest::ReferenceSource>(*be, jest_reference, opt.jest_reference_cache,
                                                                super_batch / P, loader.dataset_size(), model_cfg,
                                                                tok.vocab_size());
        jest_step = std::make_unique<JestTrainStep>(model, step, *selector, reference.get(), comm, opt.jest_score_low_res);
    }

    int64_t start_step = 0;
    std::string last_checkpoint;  // the newest checkpoint of this run folder that this process knows of
    if (!init_path.empty()) {
        const std::string note = load_initial_parameters(init_path, model);
        if (root) {
            std::printf("initialized from %s (parameters only; fresh optimizer, step 0)\n", init_path.c_str());
            if (!note.empty()) std::printf("init_from: %s\n", note.c_str());
        }
    }
    if (resuming) {
        const CheckpointState st = load_checkpoint(resume_path, model.params(), /*with_optimizer=*/true);
        adamw.set_steps_done(st.step);
        loader.seek({st.loader_epoch, st.loader_step});
        start_step = st.step;
        last_checkpoint = resume_path;
        if (root) std::printf("resumed from %s at step %lld\n", resume_path.c_str(), (long long)st.step);
    }
    if (root) {
        if (!resuming) {
            write_text_file((fs::path(opt.out_dir) / "config.ini").string(), opt.config_text);
        } else {
            // config.ini stays the record of how the run began; each resume writes its
            // effective options beside it, headed by what it changed.
            std::ostringstream rec;
            rec << "# options in effect when resuming " << resume_path << " at step " << start_step << "\n";
            for (const OptionChange& c : resume_report) {
                auto shown = [](const std::string& v) { return v.empty() ? std::string("\"\"") : v; };
                std::string line = "resume: " + c.key + " " + shown(c.run_value) + " -> " + shown(c.new_value);
                if (c.key == "train.steps") {
                    int64_t old_steps = 0;
                    try {
                        old_steps = std::stoll(c.run_value);
                    } catch (const std::exception&) {
                    }
                    if (old_steps >= std::max<int64_t>(1, opt.optim.warmup_steps)) {
                        const CosineSchedule was(opt.optim.lr, opt.optim.warmup_steps, old_steps, opt.optim.min_lr);
                        char buf[200];
                        std::snprintf(buf, sizeof buf,
                                      " (the cosine schedule now ends at step %lld: lr of step %lld %.3e, was %.3e)",
                                      (long long)opt.steps, (long long)start_step + 1, adamw.lr_at(start_step),
                                      was.lr(start_step));
                        line += buf;
                    }
                }
                std::printf("%s\n", line.c_str());
                rec << "# " << line << "\n";
            }
            if (!opt.config_text.empty()) {
                const std::string path = fresh_name(opt.out_dir, "config_resume_step_" + std::to_string(start_step), ".ini");
                write_text_file(path, rec.str() + opt.config_text);
                std::printf("resume: options in effect written to %s (config.ini keeps the run's first options)\n",
                            path.c_str());
            }
        }
        std::printf("%s\nranks %d x local batch %lld = global batch %lld, %lld steps, backend %s, %d threads/rank\n",
                    model.memory_report().c_str(), P, (long long)local_batch, (long long)opt.global_batch,
                    (long long)opt.steps, be->name().c_str(), omp_get_max_threads());
        if (!lo.rows.empty())
            std::printf("training on %lld of %lld rows (%.1f%%)%s, %lld steps per epoch\n", (long long)lo.rows.size(),
                        (long long)loader.dataset_size(), 100.0 * double(lo.rows.size()) / double(loader.dataset_size()),
                        opt.mode_expert >= 0 ? (" = MoDE expert " + std::to_string(opt.mode_expert) + " of " +
                                                opt.mode_assign).c_str() : "",
                        (long long)loader.steps_per_epoch());
        if (opt.jest_enabled)
            std::printf("JEST: %s; super-batch %lld -> %lld, reference %s\n", jcfg.str().c_str(),
                        (long long)super_batch, (long long)opt.global_batch,
                        reference ? (reference->live() ? "live forward" : "cached embeddings") : "none");
        std::fflush(stdout);
    }
    MetricsLog metrics;
    if (root) metrics.open((fs::path(opt.out_dir) / "metrics.jsonl").string());

    install_preemption_handlers();
    // A rank that stops without dying would leave the others waiting for ever in a
    // collective: the watchdog ends the job with a report (preemption.h).
    start_progress_watchdog(opt.step_timeout);
    struct WatchdogStop {
        ~WatchdogStop() { stop_progress_watchdog(); }
    } watchdog_stop;
    // Checkpoints and evaluations have no step to note: the watchdog waits them out.
    struct WatchdogPause {
        WatchdogPause() { pause_progress_watchdog(true); }
        ~WatchdogPause() { pause_progress_watchdog(false); }
    };
    // Training again (train.overwrite, or a resume to more steps): not finished until the end.
    if (root) {
        std::error_code ec;
        fs::remove(fs::path(opt.out_dir) / kFinishedMarker, ec);
        CC_REQUIRE(!ec, "cannot remove ", (fs::path(opt.out_dir) / kFinishedMarker).string(), " (", ec.message(), ")");
    }
    double total_flops = 0;  // model FLOPs of this run segment (scoring included), all ranks
    int64_t skip_streak = 0;  // steps skipped in a row (non-finite loss or gradients)
    // Returns whether a checkpoint was written. After skipped steps the parameters are
    // checked first: a non-finite state never becomes `latest`.
    auto checkpoint = [&](int64_t done) {
        const WatchdogPause pause;
        int64_t bad = 0;
        if (skip_streak > 0 && !parameters_finite(model.params())) bad = 1;
        comm.allreduce_max(&bad, 1);
        if (bad) {
            if (root)
                std::printf("step %lld: parameters are not finite: no checkpoint written (the last good one: %s)\n",
                            (long long)done, last_checkpoint.empty() ? "none" : last_checkpoint.c_str());
            return false;
        }
        if (root) {
            const io::LoaderPosition pos = loader.position();
            CheckpointState state;
            state.step = done;
            state.loader_epoch = pos.epoch;
            state.loader_step = pos.step;
            state.seed = opt.seed;
            state.config = opt.config_text;
            state.model_config = model_config_to_ini(model_cfg);
            state.tokenizer_id = tok.id_hex();
            state.train_rows = loader.dataset_size();
            state.train_fingerprint = train_fingerprint;
            save_checkpoint(opt.out_dir, checkpoint_name(done), model.params(), state);
        }
        comm.barrier();
        last_checkpoint = (fs::path(opt.out_dir) / checkpoint_name(done)).string();
        return true;
    };
    auto run_eval = [&](int64_t done) {
        if (opt.eval_path.empty()) return;
        const WatchdogPause pause;
        const EvalReport r = evaluate(model, tok, opt.eval_path, comm);
        model.set_batch(local_batch);
        if (root) {
            std::printf("eval at step %lld on %s\n%s", (long long)done, opt.eval_path.c_str(), format_report(r).c_str());
            metrics.write("{\"step\": " + std::to_string(done) + ", \"eval\": true, \"flops\": " +
                          json_number(total_flops, "%.6e") + ", " + report_json_fields(r) + "}");
            std::fflush(stdout);
        }
    };

    const auto t_start = Clock::now();
    auto t_window = t_start;
    int64_t window_examples = 0, skipped = 0;
    double window_loss = 0, window_score = 0, window_super_score = 0, window_corrupted = 0;
    int64_t window_all_steps = 0;
    int64_t window_steps = 0;
    for (int64_t s = start_step; s < opt.steps; ++s) {
        const auto t_step = Clock::now();
        const io::Batch batch = loader.next();
        if (opt.on_batch_rows) opt.on_batch_rows(s, batch.indices);
        StepResult r;
        if (jest_step) {
            const JestStepResult j = jest_step->run(batch, adamw, uint64_t(s));
            r = j.train;
            total_flops += j.flops;
            window_score += j.batch_score;
            window_super_score += j.superbatch_score;
            window_corrupted += j.corrupted_share;
        } else {
            r = step.run(batch.images.data(), batch.tokens.data(), adamw);
            total_flops += double(opt.global_batch) * step.train_flops_per_pair();
            double counts[1] = {0};
            for (uint8_t c : batch.corrupted) counts[0] += c;
            if (P > 1) comm.allreduce_sum(counts, 1);
            window_corrupted += counts[0] / double(opt.global_batch);
        }
        // The loss and the gradient norm are global: every rank sees the same skip.
        if (r.skipped || !std::isfinite(r.loss)) {
            ++skipped;
            ++skip_streak;
            if (root) std::printf("step %lld: non-finite loss or gradients, update skipped\n", (long long)s + 1);
        } else {
            skip_streak = 0;
            window_loss += r.loss;
            ++window_steps;
        }
        window_examples += opt.global_batch;
        ++window_all_steps;
        const int64_t done = s + 1;
        const bool stalled = opt.max_skipped_steps > 0 && skip_streak >= opt.max_skipped_steps;
        if (done % opt.log_every == 0 || done == opt.steps || stalled) {
            const double dt = std::chrono::duration<double>(Clock::now() - t_window).count();
            const double rate = window_examples / std::max(dt, 1e-9);
            const double eta = double(opt.steps - done) * opt.global_batch / std::max(rate, 1e-9);
            const double mean_loss = window_steps ? window_loss / double(window_steps) : NAN;
            const double n = double(std::max<int64_t>(window_all_steps, 1));
            if (root) {
                char extra[160] = "";
                if (jest_step)
                    std::snprintf(extra, sizeof extra, "  score %.3f (super %.3f)  corrupted %.1f%%", window_score / n,
                                  window_super_score / n, 100 * window_corrupted / n);
                std::printf("step %6lld/%lld  loss %.4f  lr %.2e  grad_norm %.3f  %.1f ex/s%s  eta %s\n", (long long)done,
                            (long long)opt.steps, mean_loss, adamw.last_lr(), r.grad_norm, rate, extra,
                            format_eta(eta).c_str());
                std::fflush(stdout);
                std::string line = "{\"step\": " + std::to_string(done) + ", \"loss\": " + json_number(mean_loss, "%.6f") +
                                   ", \"lr\": " + json_number(adamw.last_lr(), "%.6e") +
                                   ", \"grad_norm\": " + json_number(r.grad_norm, "%.6f") +
                                   ", \"examples_per_s\": " + json_number(rate, "%.3f") +
                                   ", \"epoch\": " + std::to_string(batch.epoch) + ", \"skipped\": " + std::to_string(skipped) +
                                   ", \"elapsed_s\": " +
                                   json_number(std::chrono::duration<double>(Clock::now() - t_start).count(), "%.3f") +
                                   ", \"flops\": " + json_number(total_flops, "%.6e") +
                                   ", \"corrupted_share\": " + json_number(window_corrupted / n, "%.6f");
                if (jest_step)
                    line += ", \"jest_score\": " + json_number(window_score / n) +
                            ", \"superbatch_score\": " + json_number(window_super_score / n);
                metrics.write(line + "}");
            }
            t_window = Clock::now();
            window_examples = 0;
            window_loss = 0;
            window_steps = 0;
            window_all_steps = 0;
            window_score = window_super_score = window_corrupted = 0;
        }
        if (stalled)
            CC_USER_FAIL("train: ", skip_streak, " steps in a row (", done - skip_streak + 1, "..", done,
                         ") had a non-finite loss or gradient norm and changed nothing (train.max_skipped_steps = ",
                         opt.max_skipped_steps, "); stopped without writing a checkpoint. The last good checkpoint: ",
                         last_checkpoint.empty() ? std::string("none (this run wrote none)") : last_checkpoint,
                         ". Look for the cause in the inputs and options (a too large train.lr, bad "
                         "model.image_mean / image_std, a damaged init_from or data file); train.max_skipped_steps 0 "
                         "never stops");
        note_progress(done, std::chrono::duration<double>(Clock::now() - t_step).count());
        if (opt.checkpoint_every > 0 && done % opt.checkpoint_every == 0 && done != opt.steps) {
            // Not while steps are being skipped: `latest` stays the last checkpoint
            // written before them (the state has not changed since, the data position has).
            if (skip_streak == 0) checkpoint(done);
            else if (root)
                std::printf("step %lld: no checkpoint while steps are skipped (latest stays %s)\n", (long long)done,
                            last_checkpoint.empty() ? "none" : last_checkpoint.c_str());
        }
        if (opt.eval_every > 0 && done % opt.eval_every == 0 && done != opt.steps) run_eval(done);
        // Every rank agrees whether any rank was asked to stop.
        int64_t stop = preemption_requested() ? 1 : 0;
        comm.allreduce_max(&stop, 1);
        const bool segment_end = opt.stop_at > 0 && done == opt.stop_at && done != opt.steps;
        if (stop || segment_end) {
            const bool saved = checkpoint(done);
            if (root && saved)
                std::printf("%s: checkpointed step %lld in %s; continue with --train.resume latest\n",
                            stop ? "preemption signal" : "train.stop_at reached", (long long)done, opt.out_dir.c_str());
            return 0;
        }
    }
    // (A resume at the last step has that checkpoint already: only the evaluation is missing.)
    const bool saved = start_step == opt.steps ? true : checkpoint(opt.steps);
    run_eval(opt.steps);
    if (root && saved)
        write_text_file((fs::path(opt.out_dir) / kFinishedMarker).string(),
                        "step " + std::to_string(opt.steps) + "\ncheckpoint " + checkpoint_name(opt.steps) + "\n");
    if (root) {
        const double total = std::chrono::duration<double>(Clock::now() - t_start).count();
        std::printf("done: %lld steps in %.1f s, checkpoint %s\n", (long long)(opt.steps - start_step), total,
                    saved ? last_checkpoint.c_str() : "none (parameters not finite)");
    }
    return saved ? 0 : 1;
}

}  // namespace curaclip
