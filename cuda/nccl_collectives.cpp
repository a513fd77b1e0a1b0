#include "cuda/nccl_collectives.h"

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_check.h"
#include "mpi/communicator.h"

namespace curaclip::cuda {

namespace {

ncclDataType_t nccl_type(DType dt, const char* op) {
    switch (dt) {
        case DType::bf16: return ncclBfloat16;
        case DType::f32: return ncclFloat32;
        case DType::f64: return ncclFloat64;
        case DType::i32: return ncclInt32;
        case DType::u8: return ncclUint8;
    }
    CC_FAIL(op, ": unknown dtype");
}

double timeout_seconds() {
    const char* s = std::getenv("CURACLIP_NCCL_TIMEOUT_S");
    if (!s || !*s) return 1800.0;
    char* end = nullptr;
    const double v = std::strtod(s, &end);
    CC_CHECK(end && *end == '\0' && v >= 0.0, "CURACLIP_NCCL_TIMEOUT_S='", s, "' is not a number of seconds >= 0");
    return v;
}

class NcclCollectives final : public Collectives {
public:
    NcclCollectives(const Communicator& comm, Backend& backend)
        : comm_(comm), stream_(stream_of(backend)), device_(device_of(backend)), timeout_s_(timeout_seconds()) {
        ncclUniqueId id{};
        if (comm_.rank() == 0) CC_NCCL_CHECK(ncclGetUniqueId(&id));
        comm_.broadcast(reinterpret_cast<uint8_t*>(&id), sizeof id, 0);
        CC_CUDA_CHECK(cudaSetDevice(device_));
        CC_NCCL_CHECK(ncclCommInitRank(&nccl_, comm_.size(), id, comm_.rank()));
        int n = 0, r = 0;
        CC_NCCL_CHECK(ncclCommCount(nccl_, &n));
        CC_NCCL_CHECK(ncclCommUserRank(nccl_, &r));
        CC_CHECK(n == comm_.size() && r == comm_.rank(), "NCCL communicator has rank ", r, " of ", n,
                 " but MPI says ", comm_.rank(), " of ", comm_.size());
    }
    ~NcclCollectives() override {
        // Destructor: errors are ignored (an Error may be in flight already).
        if (nccl_ && !aborted_) {
            if (comm_stream_) (void)cudaStreamSynchronize(comm_stream_);
            (void)cudaStreamSynchronize(stream_);
            (void)ncclCommDestroy(nccl_);
        }
        if (ready_ev_) (void)cudaEventDestroy(ready_ev_);
        if (done_ev_) (void)cudaEventDestroy(done_ev_);
        if (comm_stream_) (void)cudaStreamDestroy(comm_stream_);
    }
    NcclCollectives(const NcclCollectives&) = delete;
    NcclCollectives& operator=(const NcclCollectives&) = delete;

    int rank() const override { return comm_.rank(); }
    int size() const override { return comm_.size(); }

    void allgather(Tensor out, Tensor in) override {
        const char* op = "allgather";
        wait_all();
        check_pair(out, in, op);
        CC_CHECK(out.numel() == in.numel() * size(), op, ": out ", out.shape.str(), " should hold ", size(),
                 " x in ", in.shape.str());
        if (in.numel() == 0) return;
        CC_NCCL_CHECK(ncclAllGather(in.data, out.data, size_t(in.numel()), nccl_type(in.dtype, op), nccl_, stream_));
        wait(op);
    }
    void reduce_scatter_sum(Tensor out, Tensor in) override {
        const char* op = "reduce_scatter_sum";
        wait_all();
        check_pair(out, in, op);
        CC_CHECK(is_float(in.dtype), op, ": ", dtype_name(in.dtype), " tensors cannot be summed");
        CC_CHECK(in.numel() == out.numel() * size(), op, ": in ", in.shape.str(), " should hold ", size(),
                 " x out ", out.shape.str());
        if (out.numel() == 0) return;
        CC_NCCL_CHECK(ncclReduceScatter(in.data, out.data, size_t(out.numel()), nccl_type(in.dtype, op), ncclSum,
                                        nccl_, stream_));
        wait(op);
    }
    void allreduce_sum(Tensor x) override {
        const char* op = "allreduce_sum";
        wait_all();
        CC_CHECK(!x.empty() || x.numel() == 0, op, ": tensor is empty");
        CC_CHECK(is_float(x.dtype), op, ": ", dtype_name(x.dtype), " tensors cannot be summed");
        if (x.numel() == 0) return;
        CC_NCCL_CHECK(ncclAllReduce(x.data, x.data, size_t(x.numel()), nccl_type(x.dtype, op), ncclSum, nccl_,
                                    stream_));
        wait(op);
    }
    // Gradient buckets (grad_buckets.h): the all-reduce runs on comm_stream_, after an
    // event recorded on the compute stream now (the bucket's gradients are final in
    // queue order), so the backward kernels queued later overlap with it. No host wait.
    void allreduce_sum_start(Tensor x) override {
        const char* op = "allreduce_sum_start";
        CC_CHECK(is_float(x.dtype), op, ": ", dtype_name(x.dtype), " tensors cannot be summed");
        if (x.numel() == 0) return;  // one rank still goes through NCCL: the GPU test's only NCCL run
        CC_CHECK(!x.empty(), op, ": unallocated tensor");
        if (!comm_stream_) {
            CC_CUDA_CHECK(cudaSetDevice(device_));
            CC_CUDA_CHECK(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking));
            CC_CUDA_CHECK(cudaEventCreateWithFlags(&ready_ev_, cudaEventDisableTiming));
            CC_CUDA_CHECK(cudaEventCreateWithFlags(&done_ev_, cudaEventDisableTiming));
        }
        CC_CUDA_CHECK(cudaEventRecord(ready_ev_, stream_));
        CC_CUDA_CHECK(cudaStreamWaitEvent(comm_stream_, ready_ev_, 0));
        CC_NCCL_CHECK(ncclAllReduce(x.data, x.data, size_t(x.numel()), nccl_type(x.dtype, op), ncclSum, nccl_,
                                    comm_stream_));
        in_flight_ = true;
    }
    // The compute stream waits for the buckets through an event (the "wait before the
    // optimizer"); the host then polls that event like any collective, so a dead peer
    // still becomes an Error rather than a hang.
    void wait_all() override {
        if (!in_flight_) return;
        in_flight_ = false;
        CC_CUDA_CHECK(cudaEventRecord(done_ev_, comm_stream_));
        CC_CUDA_CHECK(cudaStreamWaitEvent(stream_, done_ev_, 0));
        wait_until("gradient bucket all-reduce", [this] { return cudaEventQuery(done_ev_); });
    }

    void allreduce_sum_host(double* data, size_t n) override {
        if (n == 0) return;
        comm_.allreduce_sum_replicated(data, n);
    }

private:
    static void check_pair(const Tensor& out, const Tensor& in, const char* op) {
        CC_CHECK(!out.empty() && !in.empty(), op, ": empty tensor");
        CC_CHECK(out.dtype == in.dtype, op, ": out is ", dtype_name(out.dtype), " but in is ", dtype_name(in.dtype));
    }

    // Waits for the stream while polling NCCL's asynchronous error state; a failure
    // or the timeout aborts the communicator and throws (the caller aborts the job).
    void wait(const char* op) {
        wait_until(op, [this] { return cudaStreamQuery(stream_); });
    }
    // The same for any completion query (a stream or an event): cudaSuccess when done.
    template <typename Query>
    void wait_until(const char* op, Query query) {
        const auto start = std::chrono::steady_clock::now();
        for (;;) {
            const cudaError_t q = query();
            if (q == cudaSuccess) break;
            if (q != cudaErrorNotReady) {
                (void)cudaGetLastError();
                abort_comm();
                CC_FAIL("NCCL ", op, ": the stream failed: ", cudaGetErrorName(q), ": ", cudaGetErrorString(q));
            }
            ncclResult_t async = ncclSuccess;
            CC_NCCL_CHECK(ncclCommGetAsyncError(nccl_, &async));
            if (async != ncclSuccess && async != ncclInProgress) {
                abort_comm();
                CC_FAIL("NCCL ", op, " failed on rank ", rank(), ": ", ncclGetErrorString(async));
            }
            const double waited =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            if (timeout_s_ > 0.0 && waited > timeout_s_) {
                abort_comm();
                CC_FAIL("NCCL ", op, " did not finish within ", timeout_s_, " s on rank ", rank(),
                        " (a peer died or hangs; CURACLIP_NCCL_TIMEOUT_S sets the limit)");
            }
            std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
        ncclResult_t async = ncclSuccess;
        CC_NCCL_CHECK(ncclCommGetAsyncError(nccl_, &async));
        if (async != ncclSuccess && async != ncclInProgress) {
            abort_comm();
            CC_FAIL("NCCL ", op, " failed on rank ", rank(), ": ", ncclGetErrorString(async));
        }
    }
    void abort_comm() {
        if (nccl_ && !aborted_) (void)ncclCommAbort(nccl_);
        aborted_ = true;
    }

    const Communicator& comm_;
    cudaStream_t stream_;
    int device_;
    double timeout_s_;
    ncclComm_t nccl_ = nullptr;
    bool aborted_ = false;
    // Gradient buckets: their own stream (created on first use) and two events.
    cudaStream_t comm_stream_ = nullptr;
    cudaEvent_t ready_ev_ = nullptr, done_ev_ = nullptr;
    bool in_flight_ = false;
};

}  // namespace

std::unique_ptr<Collectives> make_nccl_collectives(const Communicator& comm, Backend& backend) {
    return std::make_unique<NcclCollectives>(comm, backend);
}

namespace {
// One process per GPU: the node-local rank picks the device; gradients and
// embeddings then move over NCCL instead of MPI.
[[maybe_unused]] const bool registered = register_collectives(
    {"cuda", [](const Communicator& comm) { select_device_for_local_rank(comm.local_rank().rank); },
     [](const Communicator& comm, Backend& backend) { return make_nccl_collectives(comm, backend); }});
}  // namespace

}  // namespace curaclip::cuda
