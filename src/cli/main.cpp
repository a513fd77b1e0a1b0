// curaclip <command> [options]: the one binary of the framework.
#include <hdf5.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <string>

#include "cli/commands.h"
#include "cli/options.h"
#include "cpu/blas_kernels.h"
#include "io/hdf5_file.h"
#include "model/model_config.h"
#include "mpi/communicator.h"
#include "mpi/launcher_env.h"
#include "train/preemption.h"
#include "cli/model_options.h"
#include "cli/train_options.h"
#include "train/trainer.h"

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
        "  convert   import open_clip / OpenAI CLIP weights (safetensors) as a checkpoint\n"
        "  export    write a checkpoint as open_clip weights (safetensors) + open_clip_config.json\n"
        "  info      compiled backends and model presets; or what a dataset or checkpoint holds\n"
        "run `curaclip <command> --help` for the options of a command\n");
}

// train.out as the command line or config file gives it ("" when neither does, or
// they cannot be read: the command itself reports that).
std::string peek_run_dir(int argc, char** argv) {
    try {
        boost::program_options::options_description desc;
        desc.add(curaclip::model_options()).add(curaclip::train_options());
        return curaclip::peek_option(argc, argv, desc, "train.out").value_or("");
    } catch (const std::exception&) {
        return "";
    }
}

}  // namespace


namespace {
// A file whose close failed (a full disk) leaves HDF5 1.10 unable to shut down
// without crashing (io/hdf5_file.h): end the process here, the error already printed.
void end_without_hdf5_shutdown_if_needed(int rc) {
    if (!curaclip::io::hdf5_close_failed()) return;
    std::fprintf(stderr, "curaclip: an HDF5 file could not be closed (see the error above); exiting without "
                         "HDF5's shutdown\n");
    std::fflush(stdout);
    std::fflush(stderr);
    ::_exit(rc != 0 ? rc : 1);
}
}  // namespace

int main(int argc, char** argv) {
    // Before anything else (signal handlers, MPI): OpenBLAS's kernels must match the
    // CPU, which may mean starting again with OPENBLAS_CORETYPE set (cpu/blas_kernels.h).
    curaclip::cpu::use_blas_kernels_of_this_cpu(argv);
    if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
        usage();
        return argc < 2 ? 2 : 0;
    }
    const std::string cmd = argv[1];
    if (cmd != "prep" && cmd != "train" && cmd != "eval" && cmd != "info" && cmd != "embed" &&
        cmd != "cluster" && cmd != "train-experts" && cmd != "convert" && cmd != "export") {
        std::fprintf(stderr, "curaclip: unknown command '%s'\n", cmd.c_str());
        usage();
        return 2;
    }
    // Training stops on a signal with a checkpoint (train/preemption.h). The handlers
    // go in before MPI_Init, so that a signal while MPI starts or the data loads is
    // kept for the first step instead of killing the rank (default action of SIGUSR1).
    // The other commands keep the default actions: a signal ends them.
    const bool training = cmd == "train" || cmd == "train-experts";
    if (training) curaclip::install_preemption_handlers();
    // HDF5 shuts itself down inside MPI_Finalize (parallel HDF5 hangs that on
    // MPI_COMM_SELF), not at exit: so an MPI_Abort never runs it, and a process whose
    // file close failed can skip it (io::hdf5_close_failed below).
    H5dont_atexit();
    // MPI for every command, so that each can run under mpirun; a single process
    // started by hand is a world of one.
    curaclip::MpiEnvironment mpi(&argc, &argv);
    const curaclip::Communicator world = curaclip::Communicator::world();
    int rc = 1;
    try {
        if (training) {
            curaclip::check_world_matches_launcher(world);
            curaclip::prepare_failure_report(world, argc, argv, cmd, peek_run_dir(argc - 1, argv + 1),
                                             cmd == "train-experts");
        }
        if (cmd == "prep") rc = curaclip::cmd_prep(argc - 1, argv + 1, &world);
        else if (cmd == "train-experts") rc = curaclip::cmd_train_experts(argc - 1, argv + 1, world);
        else if (cmd == "train") rc = curaclip::cmd_train(argc - 1, argv + 1, world);
        else if (cmd == "eval") {
            curaclip::check_world_matches_launcher(world);
            rc = curaclip::cmd_eval(argc - 1, argv + 1, world);
        } else if (cmd == "embed") rc = curaclip::cmd_embed(argc - 1, argv + 1, world);
        else if (cmd == "cluster") rc = curaclip::cmd_cluster(argc - 1, argv + 1, world);
        else if (cmd == "convert") rc = curaclip::cmd_convert(argc - 1, argv + 1);
        else if (cmd == "export") rc = curaclip::cmd_export(argc - 1, argv + 1);
        else rc = curaclip::cmd_info(argc - 1, argv + 1);
    } catch (const std::exception& e) {
        // This rank's own failure: the node's other ranks report it as the lost rank,
        // with the last checkpoint and the resume command.
        if (training) curaclip::report_own_failure();
        const std::string msg = "curaclip " + cmd + ": error: " + e.what();
        // One failing rank must not leave the others waiting in a collective.
        if (world.size() > 1) world.abort(1, msg);
        std::fprintf(stderr, "%s\n", msg.c_str());
        end_without_hdf5_shutdown_if_needed(1);
        return 1;
    }
    if (!training) {
        end_without_hdf5_shutdown_if_needed(rc);
        return rc;
    }
    // From here on the launcher's signals are the job's ordinary end (Open MPI ends
    // the job when the first rank exits non-zero, e.g. with 75), not a lost rank.
    curaclip::disarm_failure_report();
    // The trainer returns 0 both when it finishes and when it stops on a signal;
    // the ranks agree which (every rank returns here, so the all-reduce is safe).
    int64_t stopped = curaclip::preemption_observed() ? 1 : 0;
    if (world.size() > 1) world.allreduce_max(&stopped, 1);
    if (rc == 0 && stopped) {
        rc = curaclip::kExitResumable;
        if (world.rank() == 0) {
            std::printf("curaclip %s: stopped by %s to be resumed (exit status %d); resume with: %s\n", cmd.c_str(),
                        curaclip::preemption_signal() ? curaclip::signal_name(curaclip::preemption_signal()).c_str()
                                                      : "a signal",
                        rc, curaclip::resume_command(argc, argv, world.size()).c_str());
            std::fflush(stdout);
        }
    }
    end_without_hdf5_shutdown_if_needed(rc);
    return rc;
}
