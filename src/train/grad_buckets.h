// Bucketed gradient all-reduce, overlapped with the backward pass (docs/cuda.md §Gradient buckets overlapped with the backward, as
// PyTorch DDP does it):
//
//  * The gradients live in one arena (ParameterSet), so a bucket is a contiguous byte
//    range of it: a run of parameters that are neighbours in memory and become final
//    one after the other in the backward pass, closed once it holds >= cap bytes
//    (default 25 MiB) or when the next parameter is not its neighbour. The padding
//    between parameters inside a range is reduced along (it is zero on every rank and
//    stays zero).
//  * The model calls ready(first, count) as gradients become final (ClipModel::backward);
//    a bucket whose parameters are all final is started with
//    Collectives::allreduce_sum_start, strictly in plan order, so every rank issues the
//    same collectives in the same order. finish() starts what is left and waits
//    (Collectives::wait_all: an event on the GPU, before the optimizer).
//  * The order in which gradients become final is recorded during the first backward
//    (which reduces everything at its end) and fixed from then on, like DDP's bucket
//    rebuild after the first iteration: no hand-written list of the backward order to
//    keep in step with the model code.
//
// The planner (plan_grad_buckets) is plain C++ over byte offsets, unit-tested without a
// backend; the same schedule runs over MPI on the CPU (where allreduce_sum_start is a
// plain allreduce_sum) and over NCCL on a second stream on the GPU.
#pragma once

#include <cstddef>
#include <vector>

#include "model/parameters.h"
#include "mpi/collectives.h"

namespace curaclip {

constexpr size_t kDefaultGradBucketBytes = size_t(25) << 20;

// One parameter's gradient inside the gradient arena.
struct GradSpan {
    size_t param = 0;   // index in the ParameterSet
    size_t offset = 0;  // bytes from the start of the first gradient in memory
    size_t bytes = 0;   // its slot: up to the next gradient in memory (padding included)
};

// Bytes [offset, offset + bytes) of the arena, holding the gradients of `params`.
struct GradBucket {
    size_t offset = 0;
    size_t bytes = 0;
    std::vector<size_t> params;  // in the order they become final
};

// Buckets over spans listed in the order their gradients become final. A bucket grows
// while the next span is its neighbour in memory (directly before or after it) and
// closes as soon as it holds >= cap_bytes (cap_bytes = 0: one bucket per parameter).
std::vector<GradBucket> plan_grad_buckets(const std::vector<GradSpan>& ready_order, size_t cap_bytes);

// The spans of every gradient of `params` (offsets from the lowest gradient address),
// in parameter order. All gradients must share one dtype (they do: one arena).
std::vector<GradSpan> grad_spans(const ParameterSet& params);

class GradReducer {
public:
    // cap_bytes > 0. coll and params must outlive the reducer.
    GradReducer(ParameterSet& params, Collectives& coll, size_t cap_bytes);

    // Before each backward pass: no gradient is final yet.
    void begin();
    // Parameters [first, first + count) have their final gradients (no later op of this
    // backward writes them). Starts every bucket that is complete and next in plan order.
    void ready(size_t first, size_t count);
    // After the backward pass: starts the buckets not started yet (in plan order) and waits.
    void finish();

    bool planned() const { return planned_; }
    const std::vector<GradBucket>& buckets() const { return buckets_; }
    // Buckets started inside the last backward pass before finish() (overlap, for tests/logs).
    size_t started_early() const { return started_early_; }

private:
    void plan_from_recording();
    void start(size_t b);

    ParameterSet& params_;
    Collectives& coll_;
    size_t cap_;
    std::vector<GradSpan> spans_;           // per parameter
    std::vector<size_t> recorded_;          // first backward: the order of ready() calls
    std::vector<bool> seen_;                // per parameter, this pass
    std::vector<GradBucket> buckets_;
    std::vector<size_t> bucket_of_;         // per parameter
    std::vector<size_t> pending_;           // per bucket: parameters not final yet
    size_t next_ = 0;                       // next bucket to start
    size_t started_early_ = 0;
    bool planned_ = false;
};

}  // namespace curaclip
