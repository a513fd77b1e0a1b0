#include "train/run_inputs.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

#include "backend/registry.h"
#include "core/check.h"
#include "interop/open_clip_weights.h"
#include "interop/weights_file.h"
#include "io/hdf5_file.h"
#include "loss/contrastive_loss.h"
#include "mode/experts.h"
#include "model/checkpoint.h"
#include "train/run_folder.h"

namespace fs = std::filesystem;

namespace curaclip {

// The option checks (declared in train/trainer.h, where TrainOptions is).
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
    CC_REQUIRE(!o.init_optimizer || !o.init_from.empty(),
               "train.init_optimizer = true needs train.init_from (the checkpoint whose AdamW moments to take)");
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
// Whether two paths name one file (a relative path and its absolute form, a link).
bool same_file(const std::string& a, const std::string& b) {
    std::error_code ec;
    if (fs::exists(a, ec) && fs::exists(b, ec)) return fs::equivalent(a, b, ec);
    std::error_code e1, e2;
    return fs::weakly_canonical(a, e1) == fs::weakly_canonical(b, e2);
}

}  // namespace

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

bool parameters_finite(ParameterSet& ps) {
    for (size_t i = 0; i < ps.size(); ++i)
        for (double v : ps.values_to_host(i))
            if (!std::isfinite(v)) return false;
    return true;
}

void require_init_architecture(const std::string& path, const ModelConfig& cfg) {
    if (is_safetensors_path(path) && !interop::safetensors_describes_model(path)) return;
    std::string list;
    for (const std::string& d : hidden_shape_differences(weights_model_config(path), path, cfg, "the recipe"))
        list += "\n  " + d;
    CC_REQUIRE(list.empty(), "train.init_from ", path, " is another architecture than the recipe:", list,
               "\nGive the recipe the checkpoint's values (e.g. --model.activation, --model.vision_heads)");
}

std::string load_initial_parameters(const std::string& path, ClipModel& model) {
    const ModelConfig& cfg = model.config();
    const ModelConfig stored = weights_model_config(path);
    if (stored.sigmoid_loss == cfg.sigmoid_loss) {
        load_weights(path, model.params(), /*with_optimizer=*/false);
        return "";
    }
    ModelConfig other = cfg;
    other.sigmoid_loss = stored.sigmoid_loss;
    auto host = make_backend("cpu");
    ClipModel source(*host, other, 1);
    load_weights(path, source.params(), /*with_optimizer=*/false);
    Backend& be = model.backend();
    for (size_t j = 0; j < model.params().size(); ++j) {
        const Parameter* q = source.params().find(model.params()[j].name);
        if (!q) continue;  // logit_bias of a sigmoid model from a softmax checkpoint
        const size_t i = size_t(q - source.params().all().data());
        model.params().set_value(j, source.params().values_to_host(i).data());
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

int64_t load_initial_optimizer(const std::string& path, ClipModel& model) {
    CC_CHECK(!is_safetensors_path(path), "init_optimizer of a safetensors file (resolve_init_from refuses it)");
    const bool sigmoid = weights_model_config(path).sigmoid_loss;
    CC_REQUIRE(sigmoid == model.config().sigmoid_loss, "train.init_optimizer: ", path, " was trained with the ",
               sigmoid ? "sigmoid (SigLIP)" : "softmax (CLIP)", " loss and this run uses the other one, so its "
               "AdamW moments do not match this model's parameters; leave train.init_optimizer off");
    const CheckpointState st = load_checkpoint(path, model.params(), /*with_optimizer=*/true);
    return st.step + st.adam_step_offset;
}

std::string resolve_init_from(const TrainOptions& opt) {
    if (!opt.resume.empty() || opt.init_from.empty()) return "";
    std::string path = opt.init_from;
    CC_REQUIRE(fs::exists(path), "train.init_from: ", path, " does not exist");
    if (fs::is_directory(path)) path = resolve_checkpoint(path, "latest");
    // Before any set-up, not at the load.
    CC_REQUIRE(!opt.init_optimizer || !is_safetensors_path(path), "train.init_optimizer: ", path,
               " is a weights file without optimizer state; leave train.init_optimizer off to start from its "
               "parameters with a fresh AdamW");
    return path;
}

void check_eval_set(const TrainOptions& opt, const io::DatasetExpect& expect) {
    if (opt.eval_path.empty()) return;
    try {
        io::DatasetExpect e = expect;
        const io::DatasetReader eval_set(opt.eval_path, e);
        CC_REQUIRE(eval_set.size() > 0, opt.eval_path, " has no rows");
        io::check_labels(eval_set);
    } catch (const Error& e) {
        CC_USER_FAIL("data.eval: ", e.what());
    }
}

std::string check_jest_reference(const TrainOptions& opt, const io::DatasetExpect& expect,
                                 const std::function<std::string()>& train_fingerprint, bool root) {
    std::string reference = opt.jest_reference;
    if (!opt.jest_enabled || opt.jest.score == jest::ScoreKind::hard_learner || reference.empty()) return reference;
    CC_REQUIRE(fs::exists(reference), "jest.reference: ", reference, " does not exist");
    if (fs::is_directory(reference)) reference = resolve_checkpoint(reference, "latest");
    require_checkpoint_tokenizer(reference, "jest.reference", opt.train_path, expect.tokenizer_id);
    if (!opt.jest_reference_cache.empty()) {
        CC_REQUIRE(fs::exists(opt.jest_reference_cache), "jest.reference_cache: ", opt.jest_reference_cache,
                   " does not exist");
        const H5File f(opt.jest_reference_cache, H5File::Mode::read);
        auto attr = [&](const char* k) { return f.has_attr("/", k) ? f.attr_string("/", k) : std::string(); };
        require_side_file_source("jest.reference_cache", opt.jest_reference_cache, opt.train_path, train_fingerprint(),
                                 attr("source_dataset"), attr("source_fingerprint"), reference, attr("checkpoint"),
                                 root);
        const std::string tid = attr("tokenizer_id");
        CC_REQUIRE(tid.empty() || tid == expect.tokenizer_id, "jest.reference_cache: ", opt.jest_reference_cache,
                   " holds caption embeddings of token ids of tokenizer ", tid, ", data.tokenizer is ",
                   expect.tokenizer_id);
    }
    return reference;
}

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

RunInputs check_run_inputs(const TrainOptions& opt, const ModelConfig& model_cfg, const RunStart& start,
                           const Communicator& comm) {
    const bool root = comm.rank() == 0;
    const int P = comm.size();
    RunInputs in{BpeTokenizer::load(opt.tokenizer_path)};
    const BpeTokenizer& tok = in.tok;
    io::LoaderOptions& lo = in.loader_options;
    CC_REQUIRE(tok.vocab_size() <= model_cfg.vocab_size, "data.tokenizer ", opt.tokenizer_path, " has ",
               tok.vocab_size(), " ids but model.vocab_size is ", model_cfg.vocab_size);
    lo.expect.image_size = model_cfg.image_size;
    lo.expect.channels = model_cfg.channels;
    lo.expect.context_length = model_cfg.context_length;
    lo.expect.tokenizer_id = tok.id_hex();
    lo.expect.eot_id = tok.eot_id();
    check_eval_set(opt, lo.expect);
    // With JEST the loader reads super-batches; the model is laid out for this rank's
    // share of one (scoring) and trains on its share of the selected batch. B is the
    // same on any number of ranks (never rounded to a multiple of them).
    jest::JestConfig& jcfg = in.jest;
    jcfg = opt.jest;
    jcfg.loss = model_cfg.sigmoid_loss ? LossKind::sigmoid : LossKind::softmax;
    jcfg.seed = opt.seed;
    int64_t& super_batch = in.super_batch;
    super_batch = opt.global_batch;
    if (opt.jest_enabled) {
        super_batch = jest::super_batch_for(opt.global_batch, opt.jest.filter_ratio);
        jcfg.batch = opt.global_batch;
        jcfg.validate(super_batch, P);
    }
    const int64_t local_batch = in.local_batch = opt.global_batch / P;
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
    // io::dataset_fingerprint of data.train, computed at most once (it reads rows).
    std::optional<std::string> fingerprint;
    auto train_fingerprint = [&]() -> std::string {
        if (!fingerprint) fingerprint = io::dataset_fingerprint(io::DatasetReader(opt.train_path, lo.expect));
        return *fingerprint;
    };
    if (opt.mode_expert >= 0 || !opt.rows.empty()) {
        const io::DatasetReader train_set(opt.train_path, lo.expect);
        lo.rows = training_rows(opt, train_set.size(), opt.mode_expert >= 0 ? train_fingerprint() : std::string(), root);
        if (opt.mode_expert >= 0)
            CC_REQUIRE(int64_t(lo.rows.size()) >= super_batch, "mode.expert = ", opt.mode_expert, " has ", lo.rows.size(),
                       " examples (cluster + out-of-cluster share), fewer than one global batch of ", super_batch);
    }
    in.init_path = resolve_init_from(opt);
    in.loader = std::make_unique<io::Loader>(opt.train_path, super_batch, comm, opt.seed, lo);
    if (!in.init_path.empty()) {
        require_checkpoint_tokenizer(in.init_path, "train.init_from", opt.train_path, tok.id_hex());
        require_init_architecture(in.init_path, model_cfg);
    }
    in.jest_reference = check_jest_reference(opt, lo.expect, train_fingerprint, root);
    // What the checkpoints record of data.train (rank 0 writes them).
    in.train_fingerprint = root ? train_fingerprint() : std::string();
    require_resumed_data(start, opt, tok.id_hex(), in.loader->dataset_size(), in.train_fingerprint, comm);
    // The run folder must take files before any step runs.
    agree_on_error(comm, root ? probe_run_folder(opt.out_dir) : std::string());
    return in;
}

}  // namespace curaclip
