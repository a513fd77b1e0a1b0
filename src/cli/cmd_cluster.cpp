// curaclip cluster --embeddings EMB.h5 --out ASSIGN.h5 [--fine 1024 --experts 4 ...]
//
// MoDE two-stage clustering (docs/mode.md §k-means, src/mode/clustering.h) over the ranks of
// the job: fine k-means on a sample, coarse k-means of the fine centers into the
// experts, every example assigned. Rank 0 prints inertia and cluster sizes per
// iteration and the final expert sizes; the result goes to a NEW side file.
#include <boost/program_options.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "backend/registry.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "mode/clustering.h"
#include "mode/side_file.h"

namespace fs = std::filesystem;

namespace curaclip {

namespace {
std::string sizes_summary(const std::vector<int64_t>& s) {
    if (s.empty()) return "";
    char buf[160];
    if (s.size() <= 16) {
        std::string r;
        for (size_t i = 0; i < s.size(); ++i) r += (i ? " " : "") + std::to_string(s[i]);
        return r;
    }
    std::vector<int64_t> t = s;
    std::sort(t.begin(), t.end());
    const int64_t empty = std::count(t.begin(), t.end(), 0);
    std::snprintf(buf, sizeof buf, "min %lld median %lld max %lld empty %lld", (long long)t.front(),
                  (long long)t[t.size() / 2], (long long)t.back(), (long long)empty);
    return buf;
}
}  // namespace

int cmd_cluster(int argc, char** argv, const Communicator& world) {
    po::options_description desc("Clustering");
    desc.add_options()
        ("embeddings", po::value<std::string>()->required(), "HDF5 file with the embeddings (from `curaclip embed`, or a dataset holding /caption_emb)")
        ("dataset-key", po::value<std::string>()->default_value("/caption_emb"), "dataset of float [N, D] embeddings in that file")
        ("out", po::value<std::string>()->required(), "new HDF5 side file for the assignment (never overwritten)")
        ("fine", po::value<int64_t>()->default_value(1024), "m: fine clusters")
        ("experts", po::value<int64_t>()->default_value(4), "n: coarse clusters = experts")
        ("sample", po::value<int64_t>()->default_value(0), "points of the fine k-means, drawn at random (0: all)")
        ("iters", po::value<int>()->default_value(20), "Lloyd iterations of the fine k-means")
        ("coarse-iters", po::value<int>()->default_value(50), "Lloyd iterations of the coarse k-means")
        ("init", po::value<std::string>()->default_value("kmeans++"), "kmeans++ or random")
        ("balanced", po::value<bool>()->default_value(false), "balanced fine clusters (sizes differ by at most one)")
        ("coarse-balanced", po::value<bool>()->default_value(false),
         "balanced coarse clusters (equal fine-center counts per expert); --balanced true --coarse-balanced true is "
         "the released MoDE code's choice (balanced k-means at both levels)")
        ("normalize", po::value<bool>()->default_value(true), "L2-normalize the embeddings as they are read")
        ("seed", po::value<uint64_t>()->default_value(0), "seed of the sample and the inits")
        ("chunk", po::value<int64_t>()->default_value(65536), "rows per read of the assignment pass")
        ("backend", po::value<std::string>()->default_value("cpu"), "cpu or cuda")
        ("verbose", po::value<int>()->default_value(1), "0: final sizes only, 1: a line per iteration, 2: all sizes");
    const ParsedOptions p = parse_options(argc, argv, desc,
        "usage: [mpirun -n P] curaclip cluster --embeddings data/train_emb.h5 --out data/train_assign.h5 --fine 1024 --experts 4\n"
        "MoDE two-stage clustering: fine k-means on a sample, coarse k-means of the fine centers, all examples assigned.");
    if (p.help) return 0;
    const std::string emb = p.vm["embeddings"].as<std::string>();
    const std::string key = p.vm["dataset-key"].as<std::string>();
    const std::string out = p.vm["out"].as<std::string>();
    CC_REQUIRE(fs::exists(emb), "--embeddings ", emb, " does not exist");
    CC_REQUIRE(fs::absolute(out) != fs::absolute(emb), "--out ", out,
               " is the input itself; the assignment goes to a new side file");
    mode::check_new_output(out, "--out");
    mode::ClusterOptions opt;
    opt.fine = p.vm["fine"].as<int64_t>();
    opt.experts = p.vm["experts"].as<int64_t>();
    opt.sample = p.vm["sample"].as<int64_t>();
    opt.iters = p.vm["iters"].as<int>();
    opt.coarse_iters = p.vm["coarse-iters"].as<int>();
    opt.init = mode::parse_kmeans_init(p.vm["init"].as<std::string>());
    opt.balanced = p.vm["balanced"].as<bool>();
    opt.coarse_balanced = p.vm["coarse-balanced"].as<bool>();
    opt.normalize = p.vm["normalize"].as<bool>();
    opt.seed = p.vm["seed"].as<uint64_t>();
    opt.chunk_rows = p.vm["chunk"].as<int64_t>();
    const int verbose = p.vm["verbose"].as<int>();
    CC_REQUIRE(opt.iters >= 0 && opt.coarse_iters >= 0, "--iters and --coarse-iters must be >= 0, got ", opt.iters,
               " and ", opt.coarse_iters);
    CC_REQUIRE(opt.chunk_rows > 0, "--chunk must be positive, got ", opt.chunk_rows);

    const mode::EmbeddingReader reader(emb, key);
    const bool root = world.rank() == 0;
    if (root)
        std::printf("cluster: %s%s [%lld, %lld] on %d rank(s): fine %lld on a sample of %lld, experts %lld, init %s%s\n",
                    emb.c_str(), key.c_str(), (long long)reader.n(), (long long)reader.dim(), world.size(),
                    (long long)opt.fine, (long long)(opt.sample > 0 ? std::min(opt.sample, reader.n()) : reader.n()),
                    (long long)opt.experts, mode::kmeans_init_name(opt.init),
                    opt.balanced && opt.coarse_balanced ? ", balanced fine and coarse"
                    : opt.balanced                      ? ", balanced fine"
                    : opt.coarse_balanced               ? ", balanced coarse"
                                                        : "");
    const auto t0 = std::chrono::steady_clock::now();
    if (root && verbose > 0)
        opt.on_iteration = [&](const std::string& stage, const mode::KMeansIteration& s) {
            const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::printf("[%s] iter %3d  inertia %.6e  changed %lld  reseeded %lld  %6.1fs  sizes %s\n", stage.c_str(), s.iter,
                        s.inertia, (long long)s.changed, (long long)s.reseeded, sec,
                        verbose > 1 ? [&] { std::string r; for (auto v : s.sizes) r += std::to_string(v) + " "; return r; }().c_str()
                                    : sizes_summary(s.sizes).c_str());
            std::fflush(stdout);
        };
    auto be = make_backend(p.vm["backend"].as<std::string>());
    const mode::ClusterResult r = mode::cluster_two_stage(*be, world, reader.source(), opt);

    mode::ClusterFileInfo info;
    info.embeddings = fs::absolute(emb).string();
    info.dataset_key = key;
    info.source_dataset = reader.file().has_attr("/", "source_dataset") ? reader.file().attr_string("/", "source_dataset")
                                                                         : info.embeddings;
    if (reader.file().has_attr("/", "source_fingerprint"))
        info.source_fingerprint = reader.file().attr_string("/", "source_fingerprint");
    // The model whose embedding space the centers live in: MoDE routing embeds class names with it.
    if (reader.file().has_attr("/", "checkpoint")) info.checkpoint = reader.file().attr_string("/", "checkpoint");
    // ... or the sentence encoder (embed --encoder): routing embeds class names and queries with it.
    if (reader.file().has_attr("/", "encoder_id")) {
        info.encoder_id = reader.file().attr_string("/", "encoder_id");
        if (reader.file().has_attr("/", "encoder")) info.encoder = reader.file().attr_string("/", "encoder");
    }
    std::string cmd = "curaclip cluster";
    for (int i = 1; i < argc; ++i) cmd += std::string(" ") + argv[i];
    info.creation_command = cmd;
    info.init = mode::kmeans_init_name(opt.init);
    info.seed = opt.seed;
    info.iters = opt.iters;
    info.balanced = opt.balanced;
    info.coarse_balanced = opt.coarse_balanced;
    mode::save_cluster_result(world, out, r, info);
    if (root) {
        std::printf("fine clusters: %s\n", sizes_summary(r.fine_sizes).c_str());
        std::printf("expert sizes:");
        for (size_t e = 0; e < r.expert_sizes.size(); ++e)
            std::printf(" %zu:%lld (%.1f%%)", e, (long long)r.expert_sizes[e], 100.0 * double(r.expert_sizes[e]) / double(r.n));
        std::printf("\nmean squared distance to the fine center %.6f\nwrote %s\n", r.assign_inertia / double(r.n), out.c_str());
    }
    return 0;
}

}  // namespace curaclip
