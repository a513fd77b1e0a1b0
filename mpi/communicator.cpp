#include "mpi/communicator.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

// DETERMINISM. MPI_SUM over floating-point data is not associative, so the bits
// of a reduction depend on the order in which the library combines the ranks'
// contributions, which depends on the algorithm it picks (by communicator size,
// message size and MCA tuning). What we rely on, and what we do not:
//  * Reproducibility: for a fixed MPI library, configuration, number of ranks
//    and message sizes, the choice and the order are fixed, so a run and its
//    resume reduce to the same bits. (Open MPI's tuned/basic components are
//    deterministic in this sense; none of them reduce in arrival order.)
//  * Agreement between ranks: MPI_Allreduce does not promise that every rank
//    receives the same bits (e.g. recursive doubling combines in a different
//    order on each rank). Replicas of the model must never drift, so everything
//    that feeds the model (gradients, the loss) goes through
//    allreduce_sum_replicated: each element is reduced once, by its owner
//    (MPI_Reduce_scatter), and then copied (MPI_Allgatherv), so every rank holds
//    identical bits whatever algorithm the library uses.
//  * Not relied on: equality of results across different numbers of ranks;
//    they agree to rounding (the tests check 1e-6 relative), not bitwise.

namespace curaclip {

[[noreturn]] void mpi_fail(const char* call, int code, const char* file, int line) {
    char text[MPI_MAX_ERROR_STRING + 1] = {};
    int len = 0;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized || MPI_Error_string(code, text, &len) != MPI_SUCCESS)
        std::snprintf(text, sizeof text, "error code %d", code);
    fail_at(file, line, detail::concat("MPI call ", call, " failed: ", text));
}

namespace {

template <typename T>
MPI_Datatype mpi_type();
template <> MPI_Datatype mpi_type<float>() { return MPI_FLOAT; }
template <> MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }
template <> MPI_Datatype mpi_type<int32_t>() { return MPI_INT32_T; }
template <> MPI_Datatype mpi_type<int64_t>() { return MPI_INT64_T; }
template <> MPI_Datatype mpi_type<uint8_t>() { return MPI_UINT8_T; }

// Largest element count we hand to a single MPI call (MPI counts are int).
constexpr size_t kMaxChunk = size_t(1) << 30;

int checked_count(size_t count, const char* what) {
    CC_CHECK(count <= size_t(INT_MAX), what, ": ", count,
             " elements exceed the MPI count limit (2^31-1)");
    return int(count);
}

bool mpi_live() {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}

}  // namespace

// ---- MpiEnvironment ---------------------------------------------------------------

MpiEnvironment::MpiEnvironment(int* argc, char*** argv) {
    int init = 0;
    CC_MPI_CHECK(MPI_Initialized(&init));
    if (init) {
        CC_MPI_CHECK(MPI_Query_thread(&provided_));
    } else {
        CC_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided_));
        owned_ = true;
    }
    CC_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    CC_CHECK(provided_ >= MPI_THREAD_FUNNELED,
             "the MPI library grants thread level ", provided_,
             ", curaclip needs MPI_THREAD_FUNNELED");
}

MpiEnvironment::~MpiEnvironment() {
    if (owned_ && mpi_live()) MPI_Finalize();
}

bool MpiEnvironment::initialized() { return mpi_live(); }

// ---- Communicator -------------------------------------------------------------------

Communicator Communicator::world() { return Communicator(MPI_COMM_WORLD, false); }

Communicator::Communicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
    if (comm_ == MPI_COMM_NULL) return;
    CC_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    CC_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    CC_MPI_CHECK(MPI_Comm_size(comm_, &size_));
}

Communicator::~Communicator() { release(); }

void Communicator::release() noexcept {
    if (owned_ && comm_ != MPI_COMM_NULL && mpi_live()) MPI_Comm_free(&comm_);
    comm_ = MPI_COMM_NULL;
    owned_ = false;
}

Communicator::Communicator(Communicator&& o) noexcept
    : comm_(std::exchange(o.comm_, MPI_COMM_NULL)),
      owned_(std::exchange(o.owned_, false)),
      rank_(std::exchange(o.rank_, 0)),
      size_(std::exchange(o.size_, 0)) {}

Communicator& Communicator::operator=(Communicator&& o) noexcept {
    if (this != &o) {
        release();
        comm_ = std::exchange(o.comm_, MPI_COMM_NULL);
        owned_ = std::exchange(o.owned_, false);
        rank_ = std::exchange(o.rank_, 0);
        size_ = std::exchange(o.size_, 0);
    }
    return *this;
}

Communicator Communicator::split(int color, int key) const {
    CC_CHECK(valid(), "split() on a null communicator");
    CC_CHECK(color >= 0 || color == MPI_UNDEFINED, "split color must be >= 0 or MPI_UNDEFINED, got ",
             color);
    MPI_Comm out = MPI_COMM_NULL;
    CC_MPI_CHECK(MPI_Comm_split(comm_, color, key, &out));
    return Communicator(out, out != MPI_COMM_NULL);
}

Communicator Communicator::split_shared() const {
    CC_CHECK(valid(), "split_shared() on a null communicator");
    MPI_Comm out = MPI_COMM_NULL;
    CC_MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &out));
    return Communicator(out, true);
}

LocalRank Communicator::local_rank() const {
    const Communicator node = split_shared();
    return LocalRank{node.rank(), node.size()};
}

void Communicator::barrier() const { CC_MPI_CHECK(MPI_Barrier(comm_)); }

namespace {
template <typename T>
void allreduce_op(MPI_Comm comm, T* data, size_t count, MPI_Op op) {
    for (size_t off = 0; off < count; off += kMaxChunk) {
        const int n = int(std::min(kMaxChunk, count - off));
        CC_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data + off, n, mpi_type<T>(), op, comm));
    }
}
}  // namespace

template <typename T>
void Communicator::allreduce_sum(T* data, size_t count) const {
    allreduce_op(comm_, data, count, MPI_SUM);
}

template <typename T>
void Communicator::allreduce_max(T* data, size_t count) const {
    allreduce_op(comm_, data, count, MPI_MAX);
}

template <typename T>
void Communicator::allreduce_min(T* data, size_t count) const {
    allreduce_op(comm_, data, count, MPI_MIN);
}

template <typename T>
void Communicator::allreduce_sum_replicated(T* data, size_t count) const {
    if (size_ == 1 || count == 0) return;
    std::vector<int> counts(static_cast<size_t>(size_)), displs(static_cast<size_t>(size_));
    for (size_t off = 0; off < count; off += kMaxChunk) {
        const size_t n = std::min(kMaxChunk, count - off);
        T* chunk = data + off;
        // Rank r owns elements [displs[r], displs[r] + counts[r]) of the chunk.
        int d = 0;
        for (int r = 0; r < size_; ++r) {
            counts[size_t(r)] = int(n / size_t(size_) + (size_t(r) < n % size_t(size_) ? 1 : 0));
            displs[size_t(r)] = d;
            d += counts[size_t(r)];
        }
        const size_t mine = size_t(counts[size_t(rank_)]);
        scratch_.resize(std::max<size_t>(scratch_.size(), mine * sizeof(T)));
        T* reduced = reinterpret_cast<T*>(scratch_.data());
        CC_MPI_CHECK(MPI_Reduce_scatter(chunk, reduced, counts.data(), mpi_type<T>(), MPI_SUM,
                                        comm_));
        if (mine) std::memcpy(chunk + displs[size_t(rank_)], reduced, mine * sizeof(T));
        CC_MPI_CHECK(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, chunk, counts.data(),
                                    displs.data(), mpi_type<T>(), comm_));
    }
}

template <typename T>
void Communicator::allgather(const T* send, T* recv, size_t count) const {
    const int n = checked_count(count, "allgather");
    checked_count(count * size_t(size_), "allgather (total)");
    const void* src = send == recv + size_t(rank_) * count ? MPI_IN_PLACE : send;
    CC_MPI_CHECK(MPI_Allgather(src, n, mpi_type<T>(), recv, n, mpi_type<T>(), comm_));
}

template <typename T>
void Communicator::reduce_scatter_block(const T* send, T* recv, size_t count) const {
    const int n = checked_count(count, "reduce_scatter_block");
    checked_count(count * size_t(size_), "reduce_scatter_block (total)");
    CC_CHECK(send != recv, "reduce_scatter_block: send and recv must differ");
    CC_MPI_CHECK(MPI_Reduce_scatter_block(send, recv, n, mpi_type<T>(), MPI_SUM, comm_));
}

template <typename T>
void Communicator::broadcast(T* data, size_t count, int root) const {
    CC_CHECK(root >= 0 && root < size_, "broadcast root ", root, " out of range [0, ", size_, ")");
    for (size_t off = 0; off < count; off += kMaxChunk) {
        const int n = int(std::min(kMaxChunk, count - off));
        CC_MPI_CHECK(MPI_Bcast(data + off, n, mpi_type<T>(), root, comm_));
    }
}

void Communicator::abort(int code, const std::string& message) const {
    std::fprintf(stderr, "[rank %d/%d] %s\n", rank_, size_, message.c_str());
    std::fflush(stderr);
    std::fflush(stdout);
    if (mpi_live()) MPI_Abort(comm_ != MPI_COMM_NULL ? comm_ : MPI_COMM_WORLD, code == 0 ? 1 : code);
    std::_Exit(code == 0 ? 1 : code);
}

#define CC_INSTANTIATE(T)                                                               \
    template void Communicator::allreduce_sum<T>(T*, size_t) const;                     \
    template void Communicator::allreduce_sum_replicated<T>(T*, size_t) const;          \
    template void Communicator::allreduce_max<T>(T*, size_t) const;                     \
    template void Communicator::allreduce_min<T>(T*, size_t) const;                     \
    template void Communicator::allgather<T>(const T*, T*, size_t) const;               \
    template void Communicator::reduce_scatter_block<T>(const T*, T*, size_t) const;    \
    template void Communicator::broadcast<T>(T*, size_t, int) const;
CC_INSTANTIATE(float)
CC_INSTANTIATE(double)
CC_INSTANTIATE(int32_t)
CC_INSTANTIATE(int64_t)
CC_INSTANTIATE(uint8_t)
#undef CC_INSTANTIATE

}  // namespace curaclip
