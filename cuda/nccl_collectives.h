// Collectives over NCCL on the CUDA backend's device memory and stream (docs/cuda.md §Collectives over NCCL:
// one process per GPU). The ncclUniqueId goes from rank 0 to all ranks over MPI
// (the Communicator); each object owns one NCCL communicator over the ranks of its
// Communicator. Host reductions (allreduce_sum_host) stay on MPI.
//
// Every call is enqueued on the backend's stream and then waited for while
// ncclCommGetAsyncError is polled, so a failed or hung peer becomes a curaclip::Error
// (after ncclCommAbort) instead of a silent hang: correct first, not fast (the wait
// serializes the host with each collective). CURACLIP_NCCL_TIMEOUT_S (default 1800)
// bounds the wait; 0 waits forever.
//
// Gradient buckets (allreduce_sum_start / wait_all) are the exception: they run on a
// second stream of their own, ordered after the compute stream by an event, so the
// all-reduce of one bucket overlaps the backward kernels of the next; wait_all makes
// the compute stream wait for them (an event) and polls like the other calls.
//
// The trainer uses these for train.backend = cuda (src/train/trainer.cpp).
#pragma once

#include <memory>

#include "backend/backend.h"
#include "mpi/collectives.h"

namespace curaclip {
class Communicator;
}

namespace curaclip::cuda {

// `backend` must be the CUDA backend ("cuda"); comm and backend must outlive the result.
// Collective over comm: every rank calls it.
std::unique_ptr<Collectives> make_nccl_collectives(const Communicator& comm, Backend& backend);

}  // namespace curaclip::cuda
