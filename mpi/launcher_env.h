// What the launcher (mpirun, srun) says about the job, read from the
// environment, and the checks that catch a job launched with the wrong shape.
#pragma once

#include <string>

namespace curaclip {

class Communicator;

struct LaunchEnvironment {
    int slurm_ntasks = -1;      // SLURM_NTASKS (or SLURM_NPROCS), -1 outside Slurm
    int slurm_job_id = -1;      // SLURM_JOB_ID
    int local_rank = -1;        // OMPI_COMM_WORLD_LOCAL_RANK / SLURM_LOCALID / PMI_LOCAL_RANK
    std::string launcher;       // "slurm", "openmpi", "pmi" or "none"
};

LaunchEnvironment read_launch_environment();

// Throws an Error when Slurm asked for a number of tasks that differs from the
// MPI world (e.g. `srun` without PMI support starting N singletons).
void check_world_matches_launcher(const Communicator& world);

}  // namespace curaclip
