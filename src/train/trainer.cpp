#include "train/trainer.h"

#include <omp.h>
#include <cblas.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "backend/registry.h"
#include "eval/evaluate.h"
#include "io/checkpoint.h"
#include "io/loader.h"
#include "loss/contrastive_loss.h"
#include "mode/experts.h"
#include "model/clip_model.h"
#include "mpi/collectives.h"
#include "tokenizer/bpe_tokenizer.h"
#include "train/preemption.h"
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
        ("train.resume", po::value<std::string>()->default_value(""), "'latest' or a checkpoint file to continue from")
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
        ("train.stop_at", po::value<int64_t>()->default_value(0),
         "checkpoint and exit after this step, to continue later with --train.resume latest (0: run to the end)")
        ("train.threads", po::value<int>()->default_value(0), "OpenMP/BLAS threads per rank (0: OMP_NUM_THREADS or all)")
        ("train.grad_bucket_mb", po::value<double>()->default_value(25.0),
         "gradient all-reduce buckets in MiB, started during the backward pass (0: every parameter after it)")
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
    o.resume = vm["train.resume"].as<std::string>();
    o.overwrite = vm["train.overwrite"].as<bool>();
    o.backend = vm["train.backend"].as<std::string>();
    o.global_batch = vm["train.batch_size"].as<int64_t>();
    o.steps = vm["train.steps"].as<int64_t>();
    const int64_t seed = vm["train.seed"].as<int64_t>();
    CC_CHECK(seed >= 0, "train.seed must be >= 0, got ", seed);
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
    CC_CHECK(o.grad_bucket_mb >= 0 && o.grad_bucket_mb <= 1e6, "train.grad_bucket_mb must be in [0, 1e6] MiB, got ",
             o.grad_bucket_mb);
    o.stop_at = vm["train.stop_at"].as<int64_t>();
    CC_CHECK(o.stop_at >= 0, "train.stop_at must be >= 0, got ", o.stop_at);
    CC_CHECK(o.global_batch > 0, "train.batch_size must be positive, got ", o.global_batch);
    CC_CHECK(o.steps > 0, "train.steps must be positive, got ", o.steps);
    CC_CHECK(o.log_every > 0, "train.log_every must be positive, got ", o.log_every);
    CC_CHECK(o.eval_every >= 0 && o.checkpoint_every >= 0, "train.eval_every and train.checkpoint_every must be >= 0");
    CC_CHECK(o.threads >= 0, "train.threads must be >= 0, got ", o.threads);
    o.optim.validate();
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
    CC_CHECK(res == "full" || res == "low", "jest.score_resolution: '", res, "' is not one of full, low");
    o.jest_score_low_res = res == "low";
    o.init_from = vm["train.init_from"].as<std::string>();
    o.mode_assign = vm["mode.assign"].as<std::string>();
    o.mode_expert = vm["mode.expert"].as<int64_t>();
    o.mode_ood_share = vm["mode.ood_share"].as<double>();
    CC_CHECK(o.mode_expert >= -1, "mode.expert must be an expert id >= 0 (or -1: all data), got ", o.mode_expert);
    CC_CHECK(o.mode_ood_share >= 0 && o.mode_ood_share <= 1, "mode.ood_share must be in [0, 1], got ", o.mode_ood_share);
    CC_CHECK(o.mode_expert < 0 || !o.mode_assign.empty(), "mode.expert = ", o.mode_expert,
             " needs mode.assign (the cluster side file of `curaclip cluster`)");
    return o;
}

namespace {
using Clock = std::chrono::steady_clock;

// A run folder holds a run when it has a config.ini, checkpoints or metrics.
bool holds_run(const std::string& dir) {
    return fs::exists(fs::path(dir) / "config.ini") || fs::exists(fs::path(dir) / "latest") ||
           fs::exists(fs::path(dir) / "metrics.jsonl");
}

std::string format_eta(double seconds) {
    char buf[32];
    const long s = long(seconds + 0.5);
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    return buf;
}
}  // namespace

std::vector<int64_t> training_rows(const TrainOptions& opt, int64_t n_dataset) {
    if (opt.mode_expert < 0) return opt.rows;
    CC_CHECK(opt.rows.empty(), "train: give either explicit rows or mode.expert, not both");
    const mode::Assignment a = mode::read_assignment(opt.mode_assign, /*with_rows=*/true, "mode.assign");
    CC_CHECK(a.n_examples == n_dataset, "mode.assign: ", opt.mode_assign, " assigns ", a.n_examples,
             " examples but data.train ", opt.train_path, " has ", n_dataset,
             ": the side file belongs to another dataset");
    CC_CHECK(opt.mode_expert < a.n_experts, "mode.expert = ", opt.mode_expert, " but ", opt.mode_assign, " has ",
             a.n_experts, " experts (0..", a.n_experts - 1, ")");
    return mode::expert_rows(a.expert, a.n_experts, opt.mode_expert, opt.mode_ood_share, opt.seed);
}

int run_training(const TrainOptions& opt, const ModelConfig& model_cfg, const Communicator& comm) {
    const bool root = comm.rank() == 0;
    const int P = comm.size();
    CC_CHECK(opt.global_batch % P == 0, "train.batch_size (", opt.global_batch, ") must be divisible by the number of ranks (",
             P, ")");
    if (opt.threads > 0) {
        omp_set_num_threads(opt.threads);
        openblas_set_num_threads(opt.threads);
    }
    const bool resuming = !opt.resume.empty();
    // Refuse to clobber a finished or running experiment; decided on rank 0, agreed by all.
    int64_t refuse = 0;
    if (root && !resuming && !opt.overwrite && holds_run(opt.out_dir)) refuse = 1;
    comm.allreduce_max(&refuse, 1);
    CC_CHECK(!refuse, "run folder ", opt.out_dir,
             " already holds a run (config.ini / checkpoints / metrics.jsonl): choose a new train.out, resume it with "
             "--train.resume latest, or pass --train.overwrite true");
    if (root) fs::create_directories(opt.out_dir);
    comm.barrier();

    const BpeTokenizer tok = BpeTokenizer::load(opt.tokenizer_path);
    CC_CHECK(tok.vocab_size() <= model_cfg.vocab_size, "tokenizer ", opt.tokenizer_path, " has ", tok.vocab_size(),
             " ids but model.vocab_size is ", model_cfg.vocab_size);
    io::LoaderOptions lo;
    lo.expect.image_size = model_cfg.image_size;
    lo.expect.channels = model_cfg.channels;
    lo.expect.context_length = model_cfg.context_length;
    lo.expect.tokenizer_id = tok.id_hex();
    lo.expect.eot_id = tok.eot_id();
    // With JEST the loader reads super-batches; the model is laid out for this rank's
    // share of one (scoring) and trains on its share of the selected batch.
    jest::JestConfig jcfg = opt.jest;
    jcfg.loss = model_cfg.sigmoid_loss ? LossKind::sigmoid : LossKind::softmax;
    jcfg.seed = opt.seed;
    int64_t super_batch = opt.global_batch;
    if (opt.jest_enabled) {
        CC_CHECK(opt.jest.filter_ratio > 0 && opt.jest.filter_ratio < 1, "jest.filter_ratio must be in (0, 1), got ",
                 opt.jest.filter_ratio);
        super_batch = std::llround(double(opt.global_batch) / (1.0 - opt.jest.filter_ratio));
        super_batch = (super_batch + P - 1) / P * P;  // a whole share per rank
        jcfg.batch = opt.global_batch;
        jcfg.validate(super_batch, P);
    }
    if (opt.mode_expert >= 0 || !opt.rows.empty()) {
        const int64_t n_dataset = io::DatasetReader(opt.train_path, lo.expect).size();
        lo.rows = training_rows(opt, n_dataset);
        if (opt.mode_expert >= 0)
            CC_CHECK(int64_t(lo.rows.size()) >= super_batch, "mode.expert = ", opt.mode_expert, " has ", lo.rows.size(),
                     " examples (cluster + out-of-cluster share), fewer than one global batch of ", super_batch);
    }
    io::Loader loader(opt.train_path, super_batch, comm, opt.seed, lo);

    // One process per GPU: the node-local rank picks the device; gradients and
    // embeddings then move over NCCL instead of MPI.
#ifdef CURACLIP_HAVE_CUDA
    if (opt.backend == "cuda") cuda::select_device_for_local_rank(comm.local_rank().rank);
#endif
    auto be = make_backend(opt.backend);
    const int64_t local_batch = opt.global_batch / P;
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
            reference = std::make_unique<jest::ReferenceSource>(*be, opt.jest_reference, opt.jest_reference_cache,
                                                                super_batch / P, loader.dataset_size());
        jest_step = std::make_unique<JestTrainStep>(model, step, *selector, reference.get(), comm, opt.jest_score_low_res);
    }

    int64_t start_step = 0;
    if (!resuming && !opt.init_from.empty()) {
        std::string path = opt.init_from;
        CC_CHECK(fs::exists(path), "train.init_from: ", path, " does not exist");
        if (fs::is_directory(path)) path = resolve_checkpoint(path, "latest");
        load_checkpoint(path, model.params(), /*with_optimizer=*/false);
        if (root) std::printf("initialized from %s (parameters only; fresh optimizer, step 0)\n", path.c_str());
    }
    if (resuming) {
        const std::string path = resolve_checkpoint(opt.out_dir, opt.resume);
        const CheckpointState st = load_checkpoint(path, model.params(), /*with_optimizer=*/true);
        CC_CHECK(st.step <= opt.steps, path, " is at step ", st.step, ", past train.steps = ", opt.steps);
        adamw.set_steps_done(st.step);
        loader.seek({st.loader_epoch, st.loader_step});
        start_step = st.step;
        if (root) std::printf("resumed from %s at step %lld\n", path.c_str(), (long long)st.step);
    }
    if (root) {
        std::ofstream(fs::path(opt.out_dir) / "config.ini") << opt.config_text;
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
    std::ofstream metrics;
    if (root) metrics.open(fs::path(opt.out_dir) / "metrics.jsonl", std::ios::app);

    install_preemption_handlers();
    double total_flops = 0;  // model FLOPs of this run segment (scoring included), all ranks
    auto checkpoint = [&](int64_t done) {
        if (root) {
            const io::LoaderPosition pos = loader.position();
            save_checkpoint(opt.out_dir, checkpoint_name(done), model.params(),
                            CheckpointState{done, pos.epoch, pos.step, opt.seed, opt.config_text,
                                            model_config_to_ini(model_cfg)});
        }
        comm.barrier();
    };
    auto run_eval = [&](int64_t done) {
        if (opt.eval_path.empty()) return;
        const EvalReport r = evaluate(model, tok, opt.eval_path, comm);
        model.set_batch(local_batch);
        if (root) {
            std::printf("eval at step %lld on %s\n%s", (long long)done, opt.eval_path.c_str(), format_report(r).c_str());
            metrics << "{\"step\": " << done << ", \"eval\": true, \"flops\": " << total_flops << ", "
                    << report_json_fields(r) << "}\n";
            metrics.flush();
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
        if (r.skipped || !std::isfinite(r.loss)) {
            ++skipped;
            if (root) std::printf("step %lld: non-finite loss or gradients, update skipped\n", (long long)s + 1);
        } else {
            window_loss += r.loss;
            ++window_steps;
        }
        window_examples += opt.global_batch;
        ++window_all_steps;
        const int64_t done = s + 1;
        if (done % opt.log_every == 0 || done == opt.steps) {
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
                char buf[512];
                std::snprintf(buf, sizeof buf,
                              "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6e, \"grad_norm\": %.6f, \"examples_per_s\": %.3f, "
                              "\"epoch\": %lld, \"skipped\": %lld, \"elapsed_s\": %.3f, \"flops\": %.6e, "
                              "\"corrupted_share\": %.6f%s",
                              (long long)done, mean_loss, adamw.last_lr(), r.grad_norm, rate, (long long)batch.epoch,
                              (long long)skipped, std::chrono::duration<double>(Clock::now() - t_start).count(),
                              total_flops, window_corrupted / n, jest_step ? "" : "}\n");
                metrics << buf;
                if (jest_step) metrics << ", \"jest_score\": " << window_score / n << ", \"superbatch_score\": " << window_super_score / n << "}\n";
                metrics.flush();
            }
            t_window = Clock::now();
            window_examples = 0;
            window_loss = 0;
            window_steps = 0;
            window_all_steps = 0;
            window_score = window_super_score = window_corrupted = 0;
        }
        if (opt.checkpoint_every > 0 && done % opt.checkpoint_every == 0 && done != opt.steps) checkpoint(done);
        if (opt.eval_every > 0 && done % opt.eval_every == 0 && done != opt.steps) run_eval(done);
        // Every rank agrees whether any rank was asked to stop.
        int64_t stop = preemption_requested() ? 1 : 0;
        comm.allreduce_max(&stop, 1);
        const bool segment_end = opt.stop_at > 0 && done == opt.stop_at && done != opt.steps;
        if (stop || segment_end) {
            checkpoint(done);
            if (root)
                std::printf("%s: checkpointed step %lld in %s; continue with --train.resume latest\n",
                            stop ? "preemption signal" : "train.stop_at reached", (long long)done, opt.out_dir.c_str());
            return 0;
        }
    }
    checkpoint(opt.steps);
    run_eval(opt.steps);
    if (root) {
        const double total = std::chrono::duration<double>(Clock::now() - t_start).count();
        std::printf("done: %lld steps in %.1f s, checkpoint %s/%s\n", (long long)(opt.steps - start_step), total,
                    opt.out_dir.c_str(), checkpoint_name(opt.steps).c_str());
    }
    return 0;
}

}  // namespace curaclip
