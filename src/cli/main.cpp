// curaclip <command> [options]: the one binary of the framework.
#include <cstdio>
#include <exception>
#include <string>

#include "cli/commands.h"
#include "mpi/communicator.h"
#include "mpi/launcher_env.h"

namespace {

void usage() {
    std::printf(
        "usage: curaclip <command> [options]\n"
        "commands:\n"
        "  prep      prepare a dataset as HDF5 (fashion-mnist, webdataset, csv, tsv, jsonl, folder)\n"
        "  train     data-parallel CLIP training (run under mpirun for several ranks)\n"
        "  eval      zero-shot classification and retrieval of a checkpoint (or a routed MoDE ensemble)\n"
        "  embed     caption (or image) embeddings of a dataset by a checkpoint (MoDE, JEST)\n"
        "  cluster   MoDE two-stage k-means of caption embeddings into experts\n"
        "  train-experts  MoDE: every expert from the seed checkpoint, one node group each\n"
        "  info      compiled backends and model presets; or what a dataset or checkpoint holds\n"
        "run `curaclip <command> --help` for the options of a command\n");
}

}  // namespace


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
        if (cmd == "prep") return curaclip::cmd_prep(argc - 1, argv + 1, &world);
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
