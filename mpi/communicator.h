// MPI, the RAII way: the environment (init/finalize) and a Communicator that
// owns the communicators it creates.
//
// Every MPI call goes through CC_MPI_CHECK, which turns a non-success return
// into a curaclip::Error naming the call, the file, the line and MPI's own error
// string. That only works because every communicator we touch has the
// MPI_ERRORS_RETURN handler (MPI's default, MPI_ERRORS_ARE_FATAL, would kill the
// job without a word): MpiEnvironment sets it on MPI_COMM_WORLD and every
// Communicator sets it on the communicator it wraps.
//
// An Error is a local event: a rank that throws while others wait in a
// collective would hang them. Code near main() therefore catches every Error and
// calls Communicator::abort(), which prints the message with the rank and takes
// the whole job down with MPI_Abort (docs/architecture.md §Reliability).
//
// Threads: MPI is initialized with MPI_THREAD_FUNNELED: only the thread that
// called MpiEnvironment's constructor (the main thread) may make MPI calls.
// OpenMP workers and the data-loader thread never do.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/check.h"

namespace curaclip {

// Throws an Error "MPI call <call> failed: <MPI error string> (file:line)".
[[noreturn]] void mpi_fail(const char* call, int code, const char* file, int line);

}  // namespace curaclip

// CC_MPI_CHECK(MPI_Xxx(...)): run an MPI call and throw a curaclip::Error naming
// the call, file, line and MPI's error string unless it returns MPI_SUCCESS.
#define CC_MPI_CHECK(call)                                                      \
    do {                                                                        \
        const int cc_mpi_rc_ = (call);                                          \
        if (cc_mpi_rc_ != MPI_SUCCESS)                                          \
            ::curaclip::mpi_fail(#call, cc_mpi_rc_, __FILE__, __LINE__);        \
    } while (0)

namespace curaclip {

// Initializes MPI (MPI_THREAD_FUNNELED) for the lifetime of the object and
// finalizes it in the destructor. Where MPI is already initialized (a library
// embedding us) it neither initializes nor finalizes. Exactly one per process.
class MpiEnvironment {
public:
    MpiEnvironment(int* argc, char*** argv);
    MpiEnvironment() : MpiEnvironment(nullptr, nullptr) {}
    ~MpiEnvironment();
    MpiEnvironment(const MpiEnvironment&) = delete;
    MpiEnvironment& operator=(const MpiEnvironment&) = delete;

    // The thread level MPI granted (>= MPI_THREAD_FUNNELED, checked).
    int thread_level() const { return provided_; }
    static bool initialized();  // MPI_Init done and MPI_Finalize not yet

private:
    bool owned_ = false;
    int provided_ = 0;
};

// Where this process sits on its node: for picking a GPU (one process per GPU).
struct LocalRank {
    int rank = 0;  // rank among the processes of comm on this node
    int size = 1;  // number of processes of comm on this node
};

// A communicator: MPI_COMM_WORLD (borrowed) or one made by split() (owned,
// freed in the destructor). Movable, not copyable.
//
// The typed collectives exist for float, double, int32_t, int64_t and uint8_t
// (byte buffers; MPI_SUM on them is a wrapping sum of unsigned bytes). Counts
// are element counts. Buffers are host memory. Every collective must be called
// by every rank of the communicator in the same order with matching counts.
class Communicator {
public:
    // Borrows MPI_COMM_WORLD.
    static Communicator world();
    // Wraps `comm`; `owned` communicators are MPI_Comm_free'd in the destructor.
    Communicator(MPI_Comm comm, bool owned);
    ~Communicator();
    Communicator(Communicator&& o) noexcept;
    Communicator& operator=(Communicator&& o) noexcept;
    Communicator(const Communicator&) = delete;
    Communicator& operator=(const Communicator&) = delete;

    int rank() const { return rank_; }
    int size() const { return size_; }
    MPI_Comm handle() const { return comm_; }

    // MPI_Comm_split: ranks with the same color form a new communicator, ordered
    // by key (then by rank here). color may be MPI_UNDEFINED: the rank gets an
    // empty Communicator (valid() == false).
    Communicator split(int color, int key) const;
    // The processes of this communicator that share this node's memory.
    Communicator split_shared() const;
    bool valid() const { return comm_ != MPI_COMM_NULL; }

    void barrier() const;

    // In place: data[i] = sum over ranks of data[i]. MPI_Allreduce; counts of any
    // size (split into chunks below 2^31 elements).
    template <typename T>
    void allreduce_sum(T* data, size_t count) const;
    // In place, like allreduce_sum, but the result is bitwise identical on every
    // rank by construction: each element is reduced by exactly one rank
    // (MPI_Reduce_scatter) and then copied to all (MPI_Allgatherv), which is
    // also the bandwidth-optimal ring schedule. See DETERMINISM in the .cpp.
    template <typename T>
    void allreduce_sum_replicated(T* data, size_t count) const;
    template <typename T>
    void allreduce_max(T* data, size_t count) const;
    template <typename T>
    void allreduce_min(T* data, size_t count) const;
    // recv[r*count + i] = send_r[i]; recv holds size()*count elements. send may
    // be recv + rank()*count (in place).
    template <typename T>
    void allgather(const T* send, T* recv, size_t count) const;
    // recv[i] = sum over ranks r of send_r[rank()*count + i]; send holds
    // size()*count elements, recv count.
    template <typename T>
    void reduce_scatter_block(const T* send, T* recv, size_t count) const;
    // data on `root` copied to every rank.
    template <typename T>
    void broadcast(T* data, size_t count, int root) const;

    // Prints "[rank r/size] message" on stderr and aborts every process of the
    // job (MPI_Abort), so one failing rank never leaves the others hanging.
    [[noreturn]] void abort(int code, const std::string& message) const;

    // Node-local rank and size (MPI_Comm_split_type SHARED), for device selection.
    LocalRank local_rank() const;

private:
    void release() noexcept;
    MPI_Comm comm_ = MPI_COMM_NULL;
    bool owned_ = false;
    int rank_ = 0;
    int size_ = 0;
    mutable std::vector<char> scratch_;  // allreduce_sum_replicated's reduced block
};

}  // namespace curaclip
