// Collectives: the communication that model, loss and trainer code needs, over
// backend tensors.
//
// Callers see only this interface; which transport moves the bytes is decided
// once, where the run is set up: MPI on host memory (CPU backends), MPI staged
// through host buffers (any other backend: correct, not fast), single process
// (no communication), or NCCL on device memory (cuda/, later). Callers never
// branch on it.
//
// Shapes: a "gathered" tensor has P = size() times the rows of its local part,
// rank r's part at rows [r*n, (r+1)*n) (leading dimension), the other
// dimensions equal. Float tensors of any float dtype; allgather also moves
// i32/u8 tensors. Every call is collective: every rank calls it, in the same
// order, with the same shapes.
//
// Determinism (see mpi/communicator.cpp): allreduce_sum and
// allreduce_sum_host give bitwise identical results on every rank (each
// element is reduced once by its owner, then copied), so data-parallel replicas
// never drift; for a fixed number of ranks and MPI configuration results are
// reproducible run to run. Results for different rank counts agree to rounding.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"

namespace curaclip {

class Communicator;

class Collectives {
public:
    virtual ~Collectives() = default;

    virtual int rank() const = 0;
    virtual int size() const = 0;

    // out [P*n, ...] = the in [n, ...] of every rank, in rank order.
    virtual void allgather(Tensor out, Tensor in) = 0;
    // out [n, ...] = sum over ranks of rows [rank*n, (rank+1)*n) of their in [P*n, ...].
    // Overwrites out; in is left unchanged.
    virtual void reduce_scatter_sum(Tensor out, Tensor in) = 0;
    // x = sum over ranks of x, in place.
    virtual void allreduce_sum(Tensor x) = 0;
    // data[0..n) = sum over ranks, in place, on host memory (metrics, counters).
    virtual void allreduce_sum_host(double* data, size_t n) = 0;

    // Asynchronous allreduce_sum for gradient buckets overlapped with the backward pass
    // (src/train/grad_buckets.h). Starts x = sum over ranks of x after the work already
    // queued on the backend; x must not be read or written until wait_all() returns.
    // Same order and shapes on every rank, like every collective. The default (MPI,
    // one process) is allreduce_sum itself, complete on return; NCCL runs it on its own
    // stream. Other collectives called in between first wait for the started ones.
    virtual void allreduce_sum_start(Tensor x) { allreduce_sum(x); }
    // Every allreduce_sum_start so far is complete as far as later backend work can
    // tell (NCCL: the backend's stream waits for it through an event).
    virtual void wait_all() {}
};

// MPI over `comm` for tensors of `backend`. The CPU backends keep tensors in
// host memory and MPI works on them directly; any other backend is staged
// through host buffers with download/upload (force_staging picks that path for
// the CPU backends too, for tests). Both objects must outlive the result.
std::unique_ptr<Collectives> make_mpi_collectives(const Communicator& comm, Backend& backend,
                                                  bool force_staging = false);

// One process: size 1, rank 0; allgather and reduce_scatter copy, allreduce does nothing.
std::unique_ptr<Collectives> make_single_process_collectives(Backend& backend);

// ---- the collectives registry --------------------------------------------------
// A backend whose tensors have a faster path than MPI registers it here from a
// static initializer, as backends register with backend/registry.h (cuda/ registers
// NCCL for "cuda"). The trainer then asks by the backend it runs, never by #ifdef.
struct CollectivesFactory {
    std::string backend;  // Backend::name() it serves
    // Called before the backend is created: binds this process to its device (one
    // process per GPU: the node-local rank of comm picks the device).
    std::function<void(const Communicator& comm)> bind_device;
    std::function<std::unique_ptr<Collectives>(const Communicator& comm, Backend& backend)> create;
};
bool register_collectives(CollectivesFactory factory);
// The registered bind_device of backend `name`; nothing for a backend without one.
void bind_device_for_backend(const std::string& name, const Communicator& comm);
// The registered collectives of backend.name(), or MPI (make_mpi_collectives).
std::unique_ptr<Collectives> make_collectives(const Communicator& comm, Backend& backend);

}  // namespace curaclip
