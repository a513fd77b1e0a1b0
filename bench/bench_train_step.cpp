// CPU training-step throughput of curaclip (forward + backward + AdamW) and the
// sgemm rate of the same machine, measured in the same process. Prints one JSON
// object on stdout; bench/cpu_train_step.py runs it side by side with PyTorch.
//
//   bench_train_step --preset tiny --batch 256 --steps 20 --threads 2
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <cblas.h>

#include "backend/registry.h"
#include "core/philox.h"
#include "loss/contrastive_loss.h"
#include "model/clip_model.h"
#include "optim/adamw.h"
#include "train/train_step.h"

namespace po = boost::program_options;
using namespace curaclip;

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Best-of-3 rate of one n x n x n sgemm, GFLOP/s.
double sgemm_gflops(int n) {
    std::vector<float> a(size_t(n) * n, 0.5f), b(size_t(n) * n, 0.25f), c(size_t(n) * n, 0.0f);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    double best = 1e30;
    for (int r = 0; r < 3; ++r) {
        const auto t0 = Clock::now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
        best = std::min(best, seconds_since(t0));
    }
    return 2.0 * n * n * n / best / 1e9;
}
}  // namespace

int main(int argc, char** argv) {
    po::options_description opts("bench_train_step");
    opts.add_options()("help", "this text")
        ("preset", po::value<std::string>()->default_value("tiny"), "model preset")
        ("batch", po::value<int>()->default_value(256), "pairs per step")
        ("steps", po::value<int>()->default_value(20), "timed steps")
        ("warmup", po::value<int>()->default_value(3), "untimed steps first")
        ("threads", po::value<int>()->default_value(0), "OpenMP/BLAS threads (0 = OMP default)")
        ("loss", po::value<std::string>()->default_value("softmax"), "softmax or sigmoid");
    po::variables_map vm;
    try {
        po::store(po::parse_command_line(argc, argv, opts), vm);
        po::notify(vm);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_train_step: %s\n", e.what());
        return 2;
    }
    if (vm.count("help")) {
        std::printf("%s\n", (std::ostringstream() << opts).str().c_str());
        return 0;
    }
    try {
        const int threads = vm["threads"].as<int>();
        if (threads > 0) {
            omp_set_num_threads(threads);
            openblas_set_num_threads(threads);
        }
        ModelConfig cfg = ModelConfig::preset(vm["preset"].as<std::string>());
        const LossKind kind = parse_loss_kind(vm["loss"].as<std::string>());
        cfg.sigmoid_loss = kind == LossKind::sigmoid;
        const int B = vm["batch"].as<int>();
        auto be = make_backend("cpu");
        ClipModel model(*be, cfg, B);
        model.init_weights(1);
        auto coll = make_single_process_collectives(*be);
        ContrastiveLoss loss(*be, kind, B, cfg.embed_dim, *coll);
        TrainStep step(model, loss, *coll);
        OptimizerConfig oc;
        oc.lr = 1e-4;
        oc.total_steps = 1000;
        oc.grad_clip_norm = 1.0;
        AdamW opt(model.params(), oc);

        Philox rng(3, RngPurpose::test);
        std::vector<uint8_t> images(size_t(B) * cfg.image_size * cfg.image_size * cfg.channels);
        for (auto& p : images) p = uint8_t(rng.below(256));
        std::vector<int32_t> tokens(size_t(B) * cfg.context_length, 0);
        for (int b = 0; b < B; ++b) {
            int32_t* row = &tokens[size_t(b) * cfg.context_length];
            const int len = cfg.context_length / 2;
            row[0] = cfg.vocab_size - 2;
            for (int t = 1; t < len; ++t) row[t] = 1 + int32_t(rng.below(uint64_t(cfg.vocab_size - 3)));
            row[len] = cfg.vocab_size - 1;
        }

        const int warmup = vm["warmup"].as<int>(), steps = vm["steps"].as<int>();
        for (int s = 0; s < warmup; ++s) step.run(images.data(), tokens.data(), opt);
        std::vector<double> times;
        double last_loss = 0;
        for (int s = 0; s < steps; ++s) {
            const auto t0 = Clock::now();
            last_loss = step.run(images.data(), tokens.data(), opt).loss;
            times.push_back(seconds_since(t0));
        }
        std::sort(times.begin(), times.end());
        const double median = times[times.size() / 2];
        const double flops_step = 3.0 * cfg.forward_flops_per_pair() * B;
        const double sgemm = sgemm_gflops(1024);
        std::printf(
            "{\"preset\": \"%s\", \"batch\": %d, \"threads\": %d, \"loss\": \"%s\", \"median_step_s\": %.6f, "
            "\"examples_per_s\": %.3f, \"gflops\": %.3f, \"sgemm_gflops\": %.3f, \"parameters\": %lld, "
            "\"final_loss\": %.6f}\n",
            vm["preset"].as<std::string>().c_str(), B, omp_get_max_threads(),
            loss_kind_name(kind), median, B / median, flops_step / median / 1e9, sgemm,
            (long long)model.params().count(), last_loss);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_train_step: error: %s\n", e.what());
        return 1;
    }
}
