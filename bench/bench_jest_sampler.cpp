// JEST selection cost on the CPU: the learnability row block (scoring GEMMs + pairwise
// loss matrix of learner and reference) and the sampler, gathered and sharded, at the
// paper's scale (B = 16,384, f = 0.8, N = 16). Runs under mpirun (sharded and gathered on
// P ranks) or alone (P = 1; the sharded mode still runs its per-chunk all-reduces).
// Prints a table and one JSON line on stdout; --out writes the JSON to a file
// (bench/results/jest_sampler.json, DESIGN §12).
//
//   bench_jest_sampler --B 16384 --b 3280 --chunks 16 --dim 512 --threads 2
// (b = 3,277 = 0.2 B is not a multiple of N = 16; 3,280 is the nearest that is.)
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "backend/registry.h"
#include "core/philox.h"
#include "jest/selector.h"
#include "mpi/collectives.h"
#include "mpi/communicator.h"

namespace po = boost::program_options;
using namespace curaclip;

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string cpu_name() {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    return "unknown";
}
std::string git_commit() {
    std::string out;
    if (FILE* p = popen("git -C " CURACLIP_SOURCE_DIR " rev-parse --short HEAD 2>/dev/null", "r")) {
        char buf[64] = {};
        if (std::fgets(buf, sizeof buf, p)) out = buf;
        pclose(p);
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out.empty() ? "unknown" : out;
}

// Normalized random rows [n, D] (this rank's slice of a global matrix keyed by seed).
std::vector<float> unit_rows(int64_t first, int64_t n, int64_t D, uint64_t seed) {
    std::vector<float> x(size_t(n * D));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        Philox rng(seed, RngPurpose::test, uint64_t(first + i));
        double s = 0;
        for (int64_t k = 0; k < D; ++k) {
            const double v = rng.normal();
            x[size_t(i * D + k)] = float(v);
            s += v * v;
        }
        for (int64_t k = 0; k < D; ++k) x[size_t(i * D + k)] = float(x[size_t(i * D + k)] / std::sqrt(s));
    }
    return x;
}
}  // namespace

int main(int argc, char** argv) {
    MpiEnvironment env(&argc, &argv);
    const Communicator world = Communicator::world();
    int64_t B = 16384, b = 3280, D = 512;
    int chunks = 16, threads = 2, reps = 1;
    std::string losses = "sigmoid,softmax", out_path;
    po::options_description opts("bench_jest_sampler options");
    opts.add_options()("help", "this help")
        ("B", po::value(&B)->default_value(B), "super-batch")
        ("b", po::value(&b)->default_value(b), "selected batch (multiple of chunks and ranks)")
        ("chunks", po::value(&chunks)->default_value(chunks), "N")
        ("dim", po::value(&D)->default_value(D), "embedding dim")
        ("threads", po::value(&threads)->default_value(threads), "OpenMP threads")
        ("reps", po::value(&reps)->default_value(reps), "repetitions (best is reported)")
        ("loss", po::value(&losses)->default_value(losses), "sigmoid, softmax or both (comma-separated)")
        ("out", po::value(&out_path), "also write the JSON object to this file");
    try {
        po::variables_map vm;
        po::store(po::parse_command_line(argc, argv, opts), vm);
        po::notify(vm);
        if (vm.count("help")) {
            if (world.rank() == 0) std::printf("%s\n", (std::ostringstream() << opts).str().c_str());
            return 0;
        }
        omp_set_num_threads(threads);
        const int P = world.size(), r = world.rank();
        const int64_t Bl = B / P;
        auto be = make_backend("cpu");
        auto coll = make_mpi_collectives(world, *be);
        Arena arena(*be, size_t(4 * Bl * D * 4 + 4096), "bench inputs");
        auto up = [&](std::vector<float> v, Shape s) {
            Tensor t = arena.alloc(s, be->dtype());
            be->upload(t, v.data());
            return t;
        };
        jest::ScoringInputs in{up(unit_rows(r * Bl, Bl, D, 1), {Bl, D}), up(unit_rows(r * Bl, Bl, D, 2), {Bl, D}),
                               up(unit_rows(r * Bl, Bl, D, 3), {Bl, D}), up(unit_rows(r * Bl, Bl, D, 4), {Bl, D}),
                               up({float(std::log(10.0))}, {1}),        up({-10.0f}, {1}),
                               up({float(std::log(30.0))}, {1}),        up({-8.0f}, {1})};
        struct Row {
            std::string loss, what;
            double s;
        };
        std::vector<Row> rows;
        std::ostringstream js;
        bool identical = true;
        for (const std::string loss_name : {"sigmoid", "softmax"}) {
            if (losses.find(loss_name) == std::string::npos) continue;
            const LossKind loss = parse_loss_kind(loss_name);
            jest::LearnabilityMatrix lm(*be, *coll, loss, jest::ScoreKind::learnability, Bl, D);
            jest::ScoreBlock blk;
            double t_mat = 1e30;
            for (int i = 0; i < reps; ++i) {
                world.barrier();
                const auto t0 = Clock::now();
                lm.compute(in, blk);
                t_mat = std::min(t_mat, since(t0));
            }
            rows.push_back({loss_name, "learnability matrix (row block)", t_mat});
            js << ",\"" << loss_name << "_matrix_s\":" << t_mat;
            std::vector<int64_t> first;
            for (auto [mode, method, key] :
                 {std::tuple{jest::SelectMode::gathered, jest::SelectMethod::joint, "joint_gathered"},
                  std::tuple{jest::SelectMode::sharded, jest::SelectMethod::joint, "joint_sharded"},
                  std::tuple{jest::SelectMode::sharded, jest::SelectMethod::independent_sampled, "independent_sharded"},
                  std::tuple{jest::SelectMode::sharded, jest::SelectMethod::uniform, "uniform_sharded"}}) {
                jest::JestConfig cfg;
                cfg.batch = b;
                cfg.chunks = chunks;
                cfg.loss = loss;
                cfg.mode = mode;
                cfg.method = method;
                cfg.seed = 17;
                jest::Sampler sampler(cfg, B, &world);
                double t = 1e30;
                jest::Selection sel;
                for (int i = 0; i < reps; ++i) {
                    world.barrier();
                    const auto t0 = Clock::now();
                    sel = sampler.select(blk, 1);
                    t = std::min(t, since(t0));
                }
                if (method == jest::SelectMethod::joint) {
                    if (first.empty()) first = sel.indices;
                    else identical = identical && first == sel.indices;
                }
                rows.push_back({loss_name, std::string("sampler ") + key, t});
                js << ",\"" << loss_name << "_sampler_" << key << "_s\":" << t << ",\"" << loss_name << "_batch_score_" << key
                   << "\":" << sel.batch_score;
            }
        }
        if (r == 0) {
            std::printf("JEST selection cost, CPU, %d thread(s) x %d rank(s): B=%lld b=%lld (f=%.4f) N=%d D=%lld\n",
                        threads, P, (long long)B, (long long)b, 1.0 - double(b) / double(B), chunks, (long long)D);
            std::printf("  %-8s %-34s %10s\n", "loss", "what", "seconds");
            for (const Row& row : rows) std::printf("  %-8s %-34s %10.3f\n", row.loss.c_str(), row.what.c_str(), row.s);
            std::printf("  gathered and sharded joint selections identical: %s\n", identical ? "yes" : "NO");
            char date[32];
            const std::time_t now = std::time(nullptr);
            std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", std::localtime(&now));
            std::ostringstream o;
            o << "{\"name\":\"jest_sampler\",\"date\":\"" << date << "\",\"command\":\"bench_jest_sampler --B " << B
              << " --b " << b << " --chunks " << chunks << " --dim " << D << " --threads " << threads << " --loss "
              << losses << " (ranks " << P << ")\",\"machine\":{\"cpu\":\"" << cpu_name() << "\",\"cores\":" << threads
              << ",\"gpu\":null},\"git_commit\":\"" << git_commit() << "\",\"B\":" << B << ",\"b\":" << b
              << ",\"chunks\":" << chunks << ",\"dim\":" << D << ",\"ranks\":" << P
              << ",\"modes_identical\":" << (identical ? "true" : "false") << js.str() << "}";
            std::printf("%s\n", o.str().c_str());
            if (!out_path.empty()) std::ofstream(out_path) << o.str() << "\n";
        }
    } catch (const std::exception& e) {
        world.abort(2, std::string("bench_jest_sampler: ") + e.what());
    }
    return 0;
}
