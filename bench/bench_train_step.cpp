// Training-step throughput of curaclip (forward + loss + backward + AdamW) and the
// matrix-multiply rate of the same machine, measured in the same process. Prints one
// JSON object on stdout.
//  * --backend cpu (default): OpenBLAS sgemm rate; bench/cpu_train_step.py runs it side
//    by side with PyTorch.
//  * --backend cuda: the bf16 GEMM rate of the GPU through the backend's matmul (cuBLAS,
//    the denominator of the MFU), and the device memory the run holds at its peak;
//    bench/gpu_clip_step.py runs it side by side with PyTorch. Peak memory: device
//    bytes in use (cudaMemGetInfo) after the timed steps minus before the backend was
//    created. curaclip allocates its arenas up front and its scratch only grows, so the
//    value after the steps is the peak; it includes cuBLAS/cuDNN workspaces and the
//    fp32 master weights, not the CUDA context. Taken before the GEMM-rate buffers.
//
//   bench_train_step --preset tiny --batch 256 --steps 20 --threads 2
//   bench_train_step --backend cuda --preset vit_b16 --batch 256 --loss sigmoid
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <cblas.h>

#include "cpu/blas_kernels.h"
#include "backend/registry.h"
#include "bench/random_batch.h"
#include "core/philox.h"
#ifdef CURACLIP_HAVE_CUDA
#include "cuda/cuda_backend.h"
#include "cuda/device_info.h"
#endif
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

// Best of 3 rounds of `reps` n x n x n GEMMs in the backend's dtype (bf16 on cuda), GFLOP/s.
double backend_gemm_gflops(Backend& be, int64_t n, int reps) {
    const DType dt = be.dtype();
    std::vector<Tensor> t;
    Philox rng(17, RngPurpose::test);
    std::vector<float> host(size_t(n * n));
    for (int k = 0; k < 3; ++k) {
        t.push_back(Tensor{be.alloc(size_t(n * n) * dtype_size(dt)), dt, Shape{n, n}});
        for (float& v : host) v = float(rng.normal());
        be.upload(t.back(), host.data());
    }
    be.matmul(t[2], t[0], t[1], false, false);  // warm-up (heuristics, clocks)
    be.synchronize();
    double best = 1e30;
    for (int r = 0; r < 3; ++r) {
        const auto t0 = Clock::now();
        for (int i = 0; i < reps; ++i) be.matmul(t[2], t[0], t[1], false, false);
        be.synchronize();
        best = std::min(best, seconds_since(t0) / reps);
    }
    for (Tensor& x : t) be.free(x.data);
    return 2.0 * double(n) * double(n) * double(n) / best / 1e9;
}

std::string json_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        o += (c == '\n' ? ' ' : c);
    }
    return o;
}
}  // namespace

int main(int argc, char** argv) {
    curaclip::cpu::use_blas_kernels_of_this_cpu(argv);  // as the curaclip binary does (cpu/blas_kernels.h)
    po::options_description opts("bench_train_step");
    opts.add_options()("help", "this text")
        ("preset", po::value<std::string>()->default_value("tiny"), "model preset")
        ("batch", po::value<int>()->default_value(256), "pairs per step")
        ("steps", po::value<int>()->default_value(20), "timed steps")
        ("warmup", po::value<int>()->default_value(3), "untimed steps first")
        ("threads", po::value<int>()->default_value(0), "OpenMP/BLAS threads (0 = OMP default)")
        ("loss", po::value<std::string>()->default_value("softmax"), "softmax or sigmoid")
        ("backend", po::value<std::string>()->default_value("cpu"), "cpu or cuda")
        ("gemm-n", po::value<int>()->default_value(0),
         "side of the square GEMM that measures the peak rate (0: 1024 on cpu, 8192 on cuda; -1: skip)");
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
        const std::string backend = vm["backend"].as<std::string>();
        const bool gpu = backend == "cuda";
        ModelConfig cfg = ModelConfig::preset(vm["preset"].as<std::string>());
        const LossKind kind = parse_loss_kind(vm["loss"].as<std::string>());
        cfg.sigmoid_loss = kind == LossKind::sigmoid;
        const int B = vm["batch"].as<int>();
        std::string device = "cpu";
#ifdef CURACLIP_HAVE_CUDA
        size_t mem_before = 0;
        if (gpu && cuda::device_count() > 0) mem_before = cuda::device_memory_used();  // the context: not counted
#endif
        auto be = make_backend(backend);  // "cuda" without a GPU: a clear Error
#ifdef CURACLIP_HAVE_CUDA
        if (gpu) device = cuda::device_name(cuda::device_of(*be));
#endif
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

        const bench::Batch batch = bench::random_batch(cfg, B, 3);
        const std::vector<uint8_t>& images = batch.images;
        const std::vector<int32_t>& tokens = batch.tokens;

        const int warmup = vm["warmup"].as<int>(), steps = std::max(1, vm["steps"].as<int>());
        for (int s = 0; s < warmup; ++s) step.run(images.data(), tokens.data(), opt);
        be->synchronize();
        std::vector<double> times;
        double last_loss = 0;
        for (int s = 0; s < steps; ++s) {
            const auto t0 = Clock::now();
            last_loss = step.run(images.data(), tokens.data(), opt).loss;
            be->synchronize();  // the grad-norm download already waits; this says so
            times.push_back(seconds_since(t0));
        }
        std::sort(times.begin(), times.end());
        const double median = times[times.size() / 2];
        const double flops_pair = step.train_flops_per_pair();
        const double gflops = flops_pair * B / median / 1e9;
        std::string peak_mem = "null", attention = "own kernels";
        const std::string masters = std::to_string(model.params().master_bytes());  // 0 on the CPU
#ifdef CURACLIP_HAVE_CUDA
        if (gpu) {
            peak_mem = std::to_string(cuda::device_memory_used() - mem_before);
            attention = cuda::attention_report(*be);
        }
#endif
        int gemm_n = vm["gemm-n"].as<int>();
        if (gemm_n == 0) gemm_n = gpu ? 8192 : 1024;
        double gemm = 0.0;  // GFLOP/s
        if (gemm_n > 0) gemm = gpu ? backend_gemm_gflops(*be, gemm_n, 20) : sgemm_gflops(gemm_n);
        std::printf(
            "{\"preset\": \"%s\", \"batch\": %d, \"threads\": %d, \"loss\": \"%s\", \"backend\": \"%s\", "
            "\"device\": \"%s\", \"steps\": %d, \"median_step_s\": %.6f, \"examples_per_s\": %.3f, "
            "\"pairs_per_s\": %.3f, \"train_flops_per_pair\": %.6e, \"gflops\": %.3f, \"gemm_n\": %d, "
            "\"%s\": %.3f, \"gemm_tflops\": %.3f, \"mfu\": %s, \"peak_memory_bytes\": %s, "
            "\"master_weight_bytes\": %s, \"parameters\": %lld, \"activation_bytes\": %zu, "
            "\"final_loss\": %.6f, \"attention\": \"%s\"}\n",
            vm["preset"].as<std::string>().c_str(), B, omp_get_max_threads(), loss_kind_name(kind), backend.c_str(),
            json_escape(device).c_str(), steps, median, B / median, B / median, flops_pair, gflops, gemm_n,
            gpu ? "gemm_gflops" : "sgemm_gflops", gemm, gemm / 1e3,
            gemm > 0 ? std::to_string(gflops / gemm).c_str() : "null", peak_mem.c_str(), masters.c_str(),
            (long long)model.params().count(), model.activation_bytes(), last_loss, json_escape(attention).c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_train_step: error: %s\n", e.what());
        return 1;
    }
}
