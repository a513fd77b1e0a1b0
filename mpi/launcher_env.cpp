#include "mpi/launcher_env.h"

#include <cstdlib>

#include "core/check.h"
#include "mpi/communicator.h"

namespace curaclip {

namespace {
int env_int(const char* name) {
    const char* v = std::getenv(name);
    if (!v || !*v) return -1;
    char* end = nullptr;
    const long x = std::strtol(v, &end, 10);
    return (end && *end == '\0') ? int(x) : -1;
}
}  // namespace

LaunchEnvironment read_launch_environment() {
    LaunchEnvironment e;
    e.slurm_ntasks = env_int("SLURM_NTASKS");
    if (e.slurm_ntasks < 0) e.slurm_ntasks = env_int("SLURM_NPROCS");
    e.slurm_job_id = env_int("SLURM_JOB_ID");
    if ((e.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK")) >= 0) e.launcher = "openmpi";
    else if ((e.local_rank = env_int("SLURM_LOCALID")) >= 0) e.launcher = "slurm";
    else if ((e.local_rank = env_int("PMI_LOCAL_RANK")) >= 0) e.launcher = "pmi";
    else e.launcher = "none";
    return e;
}

void check_world_matches_launcher(const Communicator& world) {
    const LaunchEnvironment e = read_launch_environment();
    // Inside an allocation SLURM_NTASKS is the task count the job asked for; the MPI
    // world (srun, or mpirun inside the batch script) must match it.
    if (e.slurm_ntasks > 0 && std::getenv("CURACLIP_IGNORE_SLURM_NTASKS") == nullptr)
        CC_CHECK(e.slurm_ntasks == world.size(), "Slurm asked for ", e.slurm_ntasks, " tasks (SLURM_NTASKS) but the MPI "
                 "world has ", world.size(), " ranks: launch with `srun` (PMIx) or `mpirun -n ", e.slurm_ntasks,
                 "`, or set CURACLIP_IGNORE_SLURM_NTASKS=1 to run a smaller world on purpose");
}

}  // namespace curaclip
