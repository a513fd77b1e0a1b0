// curaclip <command> [options]: the one binary of the framework.
#include <cstdio>
#include <exception>
#include <string>

#include "backend/registry.h"
#include "cli/commands.h"
#include "model/clip_model.h"
#include "mpi/communicator.h"
#include "mpi/launcher_env.h"
#ifdef CURACLIP_HAVE_CUDA
#include "cuda/device_info.h"
#endif

namespace {

void usage() {
    std::printf(
        "usage: curaclip <command> [options]\n"
        "commands:\n"
        "  prep      prepare a dataset as HDF5 (prep fashion-mnist)\n"
        "  train     data-parallel CLIP training (run under mpirun for several ranks)\n"
        "  eval      zero-shot classification and retrieval of a checkpoint (or a routed MoDE ensemble)\n"
        "  embed     caption (or image) embeddings of a dataset by a checkpoint (MoDE, JEST)\n"
        "  cluster   MoDE two-stage k-means of caption embeddings into experts\n"
        "  train-experts  MoDE: every expert from the seed checkpoint, one node group each\n"
        "  info      compiled backends, model presets and their sizes\n"
        "run `curaclip <command> --help` for the options of a command\n");
}

}  // namespace

namespace curaclip {
int cmd_info(int, char**) {
    std::printf("backends:\n");
    for (const auto& f : registered_backends()) {
        const std::string why = f.unavailable_reason();
        std::printf("  %-8s %s\n", f.name.c_str(), why.empty() ? "available" : why.c_str());
    }
#ifdef CURACLIP_HAVE_CUDA
    std::printf("CUDA: %s", cuda::device_report().c_str());
#else
    std::printf("CUDA: not compiled in\n");
#endif
    std::printf("model presets (parameters, forward GFLOP per pair):\n");
    auto be = make_backend("cpu");
    for (const auto& name : ModelConfig::preset_names()) {
        const ModelConfig cfg = ModelConfig::preset(name);
        // Count parameters without allocating a large model: declare only.
        ParameterSet ps(*be);
        VisionTower v;
        TextTower t;
        v.declare(ps, cfg);
        t.declare(ps, cfg);
        std::printf("  %-8s %12lld  %8.3f   %s\n", name.c_str(), (long long)ps.count() + 1,
                    cfg.forward_flops_per_pair() / 1e9, cfg.summary().c_str());
    }
    return 0;
}
}  // namespace curaclip

int main(int argc, char** argv) {
    if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
        usage();
        return argc < 2 ? 2 : 0;
    }
    const std::string cmd = argv[1];
    if (cmd != "prep" && cmd != "train" && cmd != "eval" && cmd != "info" && cmd != "embed" &&
        cmd != "cluster" && cmd != "train-experts") {
        std::fprintf(stderr, "curaclip: unknown command '%s'\n", cmd.c_str());
        usage();
        return 2;
    }
    // MPI for every command, so that each can run under mpirun; a single process
    // started by hand is a world of one.
    curaclip::MpiEnvironment mpi(&argc, &argv);
    const curaclip::Communicator world = curaclip::Communicator::world();
    try {
        if (cmd == "prep") return curaclip::cmd_prep(argc - 1, argv + 1);
        if (cmd == "train" || cmd == "eval" || cmd == "train-experts") curaclip::check_world_matches_launcher(world);
        if (cmd == "train-experts") return curaclip::cmd_train_experts(argc - 1, argv + 1, world);
        if (cmd == "train") return curaclip::cmd_train(argc - 1, argv + 1, world);
        if (cmd == "eval") return curaclip::cmd_eval(argc - 1, argv + 1, world);
        if (cmd == "embed") return curaclip::cmd_embed(argc - 1, argv + 1, world);
        if (cmd == "cluster") return curaclip::cmd_cluster(argc - 1, argv + 1, world);
        return curaclip::cmd_info(argc - 1, argv + 1);
    } catch (const std::exception& e) {
        const std::string msg = "curaclip " + cmd + ": error: " + e.what();
        // One failing rank must not leave the others waiting in a collective.
        if (world.size() > 1) world.abort(1, msg);
        std::fprintf(stderr, "%s\n", msg.c_str());
        return 1;
    }
}
