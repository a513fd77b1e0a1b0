// k-means benchmark driver (bench/kmeans_vs_faiss.py runs it side by side with
// FAISS): Lloyd iterations of mode::kmeans on points and initial centers read
// from raw float32 files, under mpirun for several ranks (each rank reads its
// contiguous block). Prints one JSON line on rank 0: seconds of the k-means call
// (file reading excluded), the final centers' objective and where the centers
// were written.
//
//   bench_kmeans --points X.f32 --n N --dim D --init C.f32 --k K --iters I [--out C_out.f32]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cpu/blas_kernels.h"
#include "backend/registry.h"
#include "mode/clustering.h"
#include "mode/kmeans.h"
#include "mpi/communicator.h"

using namespace curaclip;

namespace {
std::vector<float> read_rows(const std::string& path, int64_t begin, int64_t count, int64_t dim) {
    std::vector<float> v(size_t(count * dim));
    FILE* f = std::fopen(path.c_str(), "rb");
    CC_CHECK(f, "cannot open ", path);
    std::fseek(f, long(begin * dim * 4), SEEK_SET);
    const size_t got = std::fread(v.data(), 4, v.size(), f);
    std::fclose(f);
    CC_CHECK(got == v.size(), path, ": expected ", v.size(), " floats at row ", begin, ", read ", got);
    return v;
}
}  // namespace

int main(int argc, char** argv) {
    curaclip::cpu::use_blas_kernels_of_this_cpu(argv);  // as the curaclip binary does (cpu/blas_kernels.h)
    MpiEnvironment env(&argc, &argv);
    const Communicator world = Communicator::world();
    try {
        std::string points, init, out;
        int64_t n = 0, dim = 0, k = 0;
        int iters = 10;
        bool balanced = false;
        for (int i = 1; i + 1 < argc; i += 2) {
            const std::string a = argv[i], v = argv[i + 1];
            if (a == "--points") points = v;
            else if (a == "--init") init = v;
            else if (a == "--out") out = v;
            else if (a == "--n") n = std::atoll(v.c_str());
            else if (a == "--dim") dim = std::atoll(v.c_str());
            else if (a == "--k") k = std::atoll(v.c_str());
            else if (a == "--iters") iters = std::atoi(v.c_str());
            else if (a == "--balanced") balanced = v == "true" || v == "1";
            else CC_FAIL("bench_kmeans: unknown option ", a);
        }
        CC_CHECK(!points.empty() && !init.empty() && n > 0 && dim > 0 && k > 0,
                 "usage: bench_kmeans --points X.f32 --n N --dim D --init C.f32 --k K --iters I [--out C.f32]");
        const auto [b, e] = mode::block_of(n, world.rank(), world.size());
        const auto x = read_rows(points, b, e - b, dim);
        const auto c0 = read_rows(init, 0, k, dim);
        auto be = make_backend("cpu");
        mode::KMeansOptions opt;
        opt.k = k;
        opt.iters = iters;
        opt.balanced = balanced;
        opt.stop_when_stable = false;   // exactly `iters` assignments + updates, as FAISS
        opt.final_assignment = false;
        world.barrier();
        const auto t0 = std::chrono::steady_clock::now();
        const auto r = mode::kmeans(*be, world, x.data(), e - b, dim, opt, c0.data());
        world.barrier();
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        // Objective of the final centers (one more assignment, not timed).
        std::vector<int32_t> a(size_t(e - b));
        std::vector<float> d(size_t(e - b));
        mode::NearestCenter(*be, r.centers.data(), k, dim, std::max<int64_t>(e - b, 1)).assign(x.data(), e - b, a.data(), d.data());
        double obj = 0;
        for (float v : d) obj += v;
        world.allreduce_sum(&obj, 1);
        if (world.rank() == 0) {
            if (!out.empty()) {
                FILE* f = std::fopen(out.c_str(), "wb");
                CC_CHECK(f && std::fwrite(r.centers.data(), 4, r.centers.size(), f) == r.centers.size(), "cannot write ", out);
                std::fclose(f);
            }
            std::printf("{\"seconds\": %.6f, \"objective\": %.9e, \"last_iter_inertia\": %.9e, \"ranks\": %d}\n", sec, obj,
                        r.inertia, world.size());
        }
    } catch (const std::exception& ex) {
        world.abort(1, std::string("bench_kmeans: ") + ex.what());
    }
    return 0;
}
