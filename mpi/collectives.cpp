#include "mpi/collectives.h"

#include <string>
#include <vector>

#include "core/check.h"
#include "mpi/communicator.h"

namespace curaclip {

namespace {

// out [P*n, ...] and in [n, ...]: same dtype, same trailing dimensions.
void check_gathered(Tensor gathered, Tensor local, int P, const char* what) {
    CC_CHECK(gathered.dtype == local.dtype, what, ": dtypes differ (", dtype_name(gathered.dtype),
             " vs ", dtype_name(local.dtype), ")");
    CC_CHECK(local.shape.ndim >= 1 && gathered.shape.ndim == local.shape.ndim, what,
             ": gathered ", gathered.shape.str(), " vs local ", local.shape.str());
    CC_CHECK(gathered.shape[0] == int64_t(P) * local.shape[0], what, ": gathered ",
             gathered.shape.str(), " must have ", P, " x the rows of local ", local.shape.str());
    for (int i = 1; i < local.shape.ndim; ++i)
        CC_CHECK(gathered.shape[i] == local.shape[i], what, ": gathered ", gathered.shape.str(),
                 " vs local ", local.shape.str());
    CC_CHECK(local.numel() == 0 || (!local.empty() && !gathered.empty()), what,
             ": unallocated tensor");
}

void check_reducible(Tensor x, const char* what) {
    CC_CHECK(is_float(x.dtype) || x.dtype == DType::i32, what, ": cannot sum ",
             dtype_name(x.dtype), " tensors");
}

bool overlaps(Tensor a, Tensor b) {
    const char* pa = static_cast<const char*>(a.data);
    const char* pb = static_cast<const char*>(b.data);
    return pa < pb + b.bytes() && pb < pa + a.bytes();
}

// ---- MPI --------------------------------------------------------------------------

class MpiCollectives final : public Collectives {
public:
    MpiCollectives(const Communicator& comm, Backend& backend, bool staged)
        : comm_(comm), backend_(backend), staged_(staged) {
        CC_CHECK(comm.valid(), "MPI collectives over a null communicator");
    }

    int rank() const override { return comm_.rank(); }
    int size() const override { return comm_.size(); }

    void allgather(Tensor out, Tensor in) override {
        check_gathered(out, in, size(), "allgather");
        const size_t n = size_t(in.numel());
        if (n == 0) return;
        if (!staged_) {
            backend_.synchronize();
            switch (in.dtype) {
                case DType::f32: comm_.allgather(in.as<float>(), out.as<float>(), n); return;
                case DType::f64: comm_.allgather(in.as<double>(), out.as<double>(), n); return;
                case DType::i32: comm_.allgather(in.as<int32_t>(), out.as<int32_t>(), n); return;
                default:
                    comm_.allgather(in.as<uint8_t>(), out.as<uint8_t>(), in.bytes());
                    return;
            }
        }
        // Staged: raw bytes in the tensor's own dtype, exact for every dtype.
        std::vector<uint8_t> send(in.bytes()), recv(out.bytes());
        backend_.download_raw(send.data(), in);
        comm_.allgather(send.data(), recv.data(), send.size());
        backend_.upload_raw(out, recv.data());
    }

    void reduce_scatter_sum(Tensor out, Tensor in) override {
        check_gathered(in, out, size(), "reduce_scatter_sum");
        check_reducible(in, "reduce_scatter_sum");
        CC_CHECK(!overlaps(out, in), "reduce_scatter_sum: out and in overlap");
        const size_t n = size_t(out.numel());
        if (n == 0) return;
        if (!staged_) {
            backend_.synchronize();
            switch (in.dtype) {
                case DType::f32:
                    comm_.reduce_scatter_block(in.as<float>(), out.as<float>(), n);
                    return;
                case DType::f64:
                    comm_.reduce_scatter_block(in.as<double>(), out.as<double>(), n);
                    return;
                case DType::i32:
                    comm_.reduce_scatter_block(in.as<int32_t>(), out.as<int32_t>(), n);
                    return;
                default: break;  // bf16 in host memory: sum in float through staging
            }
        }
        if (in.dtype == DType::f64) {
            std::vector<double> send(size_t(in.numel())), recv(n);
            backend_.download(send.data(), in);
            comm_.reduce_scatter_block(send.data(), recv.data(), n);
            backend_.upload(out, recv.data());
        } else if (in.dtype == DType::i32) {
            std::vector<int32_t> send(size_t(in.numel())), recv(n);
            backend_.download_raw(send.data(), in);
            comm_.reduce_scatter_block(send.data(), recv.data(), n);
            backend_.upload_raw(out, recv.data());
        } else {  // f32, bf16: sum in float
            std::vector<float> send(size_t(in.numel())), recv(n);
            backend_.download(send.data(), in);
            comm_.reduce_scatter_block(send.data(), recv.data(), n);
            backend_.upload(out, recv.data());
        }
    }

    void allreduce_sum(Tensor x) override {
        check_reducible(x, "allreduce_sum");
        const size_t n = size_t(x.numel());
        if (n == 0 || size() == 1) return;
        CC_CHECK(!x.empty(), "allreduce_sum: unallocated tensor");
        if (!staged_) {
            backend_.synchronize();
            switch (x.dtype) {
                case DType::f32: comm_.allreduce_sum_replicated(x.as<float>(), n); return;
                case DType::f64: comm_.allreduce_sum_replicated(x.as<double>(), n); return;
                case DType::i32: comm_.allreduce_sum_replicated(x.as<int32_t>(), n); return;
                default: break;
            }
        }
        if (x.dtype == DType::f64) {
            std::vector<double> h(n);
            backend_.download(h.data(), x);
            comm_.allreduce_sum_replicated(h.data(), n);
            backend_.upload(x, h.data());
        } else if (x.dtype == DType::i32) {
            std::vector<int32_t> h(n);
            backend_.download_raw(h.data(), x);
            comm_.allreduce_sum_replicated(h.data(), n);
            backend_.upload_raw(x, h.data());
        } else {
            std::vector<float> h(n);
            backend_.download(h.data(), x);
            comm_.allreduce_sum_replicated(h.data(), n);
            backend_.upload(x, h.data());
        }
    }

    void allreduce_sum_host(double* data, size_t n) override {
        CC_CHECK(n == 0 || data != nullptr, "allreduce_sum_host: null buffer");
        comm_.allreduce_sum_replicated(data, n);
    }

private:
    const Communicator& comm_;
    Backend& backend_;
    bool staged_;
};

// ---- one process --------------------------------------------------------------------

class SingleProcessCollectives final : public Collectives {
public:
    explicit SingleProcessCollectives(Backend& backend) : backend_(backend) {}

    int rank() const override { return 0; }
    int size() const override { return 1; }

    void allgather(Tensor out, Tensor in) override {
        check_gathered(out, in, 1, "allgather");
        if (in.numel() && out.data != in.data) backend_.copy(out, in);
    }
    void reduce_scatter_sum(Tensor out, Tensor in) override {
        check_gathered(in, out, 1, "reduce_scatter_sum");
        check_reducible(in, "reduce_scatter_sum");
        if (in.numel() && out.data != in.data) backend_.copy(out, in);
    }
    void allreduce_sum(Tensor x) override { check_reducible(x, "allreduce_sum"); }
    void allreduce_sum_host(double*, size_t) override {}

private:
    Backend& backend_;
};

}  // namespace

std::unique_ptr<Collectives> make_mpi_collectives(const Communicator& comm, Backend& backend,
                                                  bool force_staging) {
    // Host memory (the CPU backends) goes to MPI as it is; device memory is staged.
    const bool host = backend.capabilities().host_memory;
    return std::make_unique<MpiCollectives>(comm, backend, force_staging || !host);
}

std::unique_ptr<Collectives> make_single_process_collectives(Backend& backend) {
    return std::make_unique<SingleProcessCollectives>(backend);
}

namespace {
std::vector<CollectivesFactory>& collectives_factories() {
    static std::vector<CollectivesFactory> list;
    return list;
}
const CollectivesFactory* find_collectives(const std::string& name) {
    for (const auto& f : collectives_factories())
        if (f.backend == name) return &f;
    return nullptr;
}
}  // namespace

bool register_collectives(CollectivesFactory factory) {
    collectives_factories().push_back(std::move(factory));
    return true;
}

void bind_device_for_backend(const std::string& name, const Communicator& comm) {
    const CollectivesFactory* f = find_collectives(name);
    if (f && f->bind_device) f->bind_device(comm);
}

std::unique_ptr<Collectives> make_collectives(const Communicator& comm, Backend& backend) {
    const CollectivesFactory* f = find_collectives(backend.name());
    return f ? f->create(comm, backend) : make_mpi_collectives(comm, backend);
}

}  // namespace curaclip
