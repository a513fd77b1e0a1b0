// JEST selection cost on the CPU: the learnability row block (scoring GEMMs + pairwise
// loss matrix of learner and reference) and the sampler, gathered and sharded, at the
// paper's scale (B = 16,384, f = 0.8, N = 16). Runs under mpirun (sharded and gathered on
// P ranks) or alone (P = 1; the sharded mode still runs its per-chunk all-reduces).
// Prints a table and one JSON line on stdout; --out writes the JSON to a file
// (bench/results/jest_sampler.json, docs/jest.md §Sampler cost).
//
// In the same run it measures what the selection is compared with: one JEST training
// step of the --preset model (tiny: the CPU recipe) at this scale, i.e. the scoring
// forward of the B super-batch pairs (learner only: cached reference embeddings) plus a
// training step (forward, backward, AdamW) on the b selected pairs, and reports the
// sampler's share of it (sampler_share_of_step_<loss> = joint sampler / step; the
// issue's goal is <= 0.05) and the whole selection's (matrix + sampler) share.
// --dim defaults to the preset's embedding dim.
//
//   bench_jest_sampler --B 16384 --b 3280 --chunks 16 --threads 2 --reps 3 --out bench/results/jest_sampler.json
// (b = 3,277 = 0.2 B is not a multiple of N = 16; 3,280 is the nearest that is.)
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include <cblas.h>

#include "cpu/blas_kernels.h"
#include "backend/registry.h"
#include "bench/random_batch.h"
#include "core/philox.h"
#include "jest/selector.h"
#include "loss/contrastive_loss.h"
#include "model/clip_model.h"
#include "optim/adamw.h"
#include "train/train_step.h"
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

// Best-of-reps seconds of the scoring forward of B pairs (chunks of `chunk`) and of one
// training step on b pairs, for the preset model with the given loss.
struct StepCost {
    double forward_s = 0, train_s = 0;
};
StepCost step_cost(const std::string& preset, LossKind kind, int64_t B, int64_t b, int reps) {
    ModelConfig cfg = ModelConfig::preset(preset);
    cfg.sigmoid_loss = kind == LossKind::sigmoid;
    auto be = make_backend("cpu");
    const int64_t chunk = std::min<int64_t>(B, 4096);
    const int64_t nmax = std::max(chunk, b);
    const bench::Batch batch = bench::random_batch(cfg, nmax, 3);
    const std::vector<uint8_t>& images = batch.images;
    const std::vector<int32_t>& tokens = batch.tokens;
    StepCost out{1e30, 1e30};
    {
        ClipModel scorer(*be, cfg, chunk);
        scorer.init_weights(1);
        for (int r = 0; r < reps + 1; ++r) {  // the first pass warms up (pages, caches)
            const auto t0 = Clock::now();
            for (int64_t done = 0; done < B; done += chunk) {
                scorer.set_batch(std::min(chunk, B - done));
                scorer.set_inputs(images.data(), tokens.data());
                scorer.forward();
            }
            be->synchronize();
            if (r > 0) out.forward_s = std::min(out.forward_s, since(t0));
        }
    }
    ClipModel model(*be, cfg, b);
    model.init_weights(1);
    auto coll = make_single_process_collectives(*be);
    ContrastiveLoss loss(*be, kind, b, cfg.embed_dim, *coll);
    TrainStep step(model, loss, *coll);
    OptimizerConfig oc;
    oc.lr = 1e-4;
    oc.total_steps = 1000;
    oc.grad_clip_norm = 1.0;
    AdamW opt(model.params(), oc);
    for (int r = 0; r < reps + 1; ++r) {
        const auto t0 = Clock::now();
        step.run(images.data(), tokens.data(), opt);
        if (r > 0) out.train_s = std::min(out.train_s, since(t0));
    }
    return out;
}
}  // namespace

int main(int argc, char** argv) {
    curaclip::cpu::use_blas_kernels_of_this_cpu(argv);  // as the curaclip binary does (cpu/blas_kernels.h)
    MpiEnvironment env(&argc, &argv);
    const Communicator world = Communicator::world();
    int64_t B = 16384, b = 3280, D = 0;
    std::string preset = "tiny";
    bool no_step = false;
    int chunks = 16, threads = 2, reps = 1;
    int64_t tile_rows = 0;
    std::string losses = "sigmoid,softmax", out_path;
    po::options_description opts("bench_jest_sampler options");
    opts.add_options()("help", "this help")
        ("B", po::value(&B)->default_value(B), "super-batch")
        ("b", po::value(&b)->default_value(b), "selected batch (multiple of chunks and ranks)")
        ("chunks", po::value(&chunks)->default_value(chunks), "N")
        ("dim", po::value(&D)->default_value(D), "embedding dim (0: the preset's)")
        ("preset", po::value(&preset)->default_value(preset), "model of the training step compared with")
        ("no-step", po::bool_switch(&no_step), "skip the training-step measurement")
        ("threads", po::value(&threads)->default_value(threads), "OpenMP threads")
        ("tile-rows", po::value(&tile_rows)->default_value(tile_rows), "learnability row tile (0: automatic)")
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
        openblas_set_num_threads(threads);
        if (D <= 0) D = ModelConfig::preset(preset).embed_dim;
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
        std::map<std::string, double> matrix_s, joint_s;  // per loss: matrix, slower joint mode
        std::ostringstream js;
        bool identical = true;
        struct Share {
            std::string loss;
            double sampler, selection;
        };
        std::vector<Share> shares;
        for (const std::string loss_name : {"sigmoid", "softmax"}) {
            if (losses.find(loss_name) == std::string::npos) continue;
            const LossKind loss = parse_loss_kind(loss_name);
            jest::LearnabilityMatrix lm(*be, *coll, loss, jest::ScoreKind::learnability, Bl, D, tile_rows);
            jest::ScoreBlock blk;
            double t_mat = 1e30;
            for (int i = 0; i < reps; ++i) {
                world.barrier();
                const auto t0 = Clock::now();
                lm.compute(in, blk);
                t_mat = std::min(t_mat, since(t0));
            }
            rows.push_back({loss_name, "learnability matrix (row block)", t_mat});
            matrix_s[loss_name] = t_mat;
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
                    joint_s[loss_name] = std::max(joint_s[loss_name], t);
                    if (first.empty()) first = sel.indices;
                    else identical = identical && first == sel.indices;
                }
                rows.push_back({loss_name, std::string("sampler ") + key, t});
                js << ",\"" << loss_name << "_sampler_" << key << "_s\":" << t << ",\"" << loss_name << "_batch_score_" << key
                   << "\":" << sel.batch_score;
            }
            if (!no_step) {
                // The step the selection serves (every rank measures; rank 0 reports).
                const StepCost sc = step_cost(preset, loss, B, b, reps);
                const double step_s = sc.forward_s + sc.train_s;
                rows.push_back({loss_name, "step: scoring forward of B pairs", sc.forward_s});
                rows.push_back({loss_name, "step: train step on b pairs", sc.train_s});
                rows.push_back({loss_name, "step: total (without selection)", step_s});
                const double share = joint_s[loss_name] / step_s;
                const double sel_share = (matrix_s[loss_name] + joint_s[loss_name]) / step_s;
                shares.push_back({loss_name, share, sel_share});
                js << ",\"" << loss_name << "_step_forward_s\":" << sc.forward_s << ",\"" << loss_name
                   << "_step_train_s\":" << sc.train_s << ",\"" << loss_name << "_step_s\":" << step_s
                   << ",\"sampler_share_of_step_" << loss_name << "\":" << share << ",\"selection_share_of_step_"
                   << loss_name << "\":" << sel_share;
            }
        }
        if (r == 0) {
            std::printf("JEST selection cost, CPU, %d thread(s) x %d rank(s): B=%lld b=%lld (f=%.4f) N=%d D=%lld\n",
                        threads, P, (long long)B, (long long)b, 1.0 - double(b) / double(B), chunks, (long long)D);
            std::printf("  %-8s %-34s %10s\n", "loss", "what", "seconds");
            for (const Row& row : rows) std::printf("  %-8s %-34s %10.3f\n", row.loss.c_str(), row.what.c_str(), row.s);
            std::printf("  gathered and sharded joint selections identical: %s\n", identical ? "yes" : "NO");
            for (const Share& sh : shares)
                std::printf("  %-8s joint sampler = %5.1f%% of a %s step (goal <= 5%%); matrix + sampler = %5.1f%%\n",
                            sh.loss.c_str(), 100 * sh.sampler, preset.c_str(), 100 * sh.selection);
            char date[32];
            const std::time_t now = std::time(nullptr);
            std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", std::localtime(&now));
            std::ostringstream o;
            o << "{\"name\":\"jest_sampler\",\"date\":\"" << date << "\",\"command\":\"bench_jest_sampler --B " << B
              << " --b " << b << " --chunks " << chunks << " --dim " << D << " --threads " << threads << " --reps " << reps
              << " --preset " << preset << " --loss " << losses << " (ranks " << P << ")\",\"machine\":{\"cpu\":\"" << cpu_name() << "\",\"cores\":" << threads
              << ",\"gpu\":null},\"git_commit\":\"" << git_commit() << "\",\"B\":" << B << ",\"b\":" << b
              << ",\"chunks\":" << chunks << ",\"dim\":" << D << ",\"ranks\":" << P << ",\"threads\":" << threads
              << ",\"preset\":\"" << preset << "\""
              << ",\"modes_identical\":" << (identical ? "true" : "false") << js.str() << "}";
            std::printf("%s\n", o.str().c_str());
            if (!out_path.empty()) std::ofstream(out_path) << o.str() << "\n";
        }
    } catch (const std::exception& e) {
        world.abort(2, std::string("bench_jest_sampler: ") + e.what());
    }
    return 0;
}
