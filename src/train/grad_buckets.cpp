#include "train/grad_buckets.h"

#include <algorithm>
#include <cstdint>

#include "core/check.h"

namespace curaclip {

std::vector<GradBucket> plan_grad_buckets(const std::vector<GradSpan>& ready_order, size_t cap_bytes) {
    std::vector<GradBucket> out;
    GradBucket cur;
    auto close = [&] {
        if (!cur.params.empty()) out.push_back(std::move(cur));
        cur = GradBucket{};
    };
    for (const GradSpan& s : ready_order) {
        if (!cur.params.empty()) {
            const bool before = s.offset + s.bytes == cur.offset;       // backward order: the usual case
            const bool after = cur.offset + cur.bytes == s.offset;
            if (!before && !after) close();
        }
        if (cur.params.empty()) {
            cur.offset = s.offset;
            cur.bytes = s.bytes;
        } else if (s.offset < cur.offset) {
            cur.offset = s.offset;
            cur.bytes += s.bytes;
        } else {
            cur.bytes += s.bytes;
        }
        cur.params.push_back(s.param);
        if (cur.bytes >= cap_bytes) close();
    }
    close();
    return out;
}

std::vector<GradSpan> grad_spans(const ParameterSet& params) {
    const auto& all = params.all();
    std::vector<size_t> by_address(all.size());
    for (size_t i = 0; i < all.size(); ++i) by_address[i] = i;
    auto addr = [&](size_t i) { return reinterpret_cast<uintptr_t>(all[i].grad.data); };
    std::sort(by_address.begin(), by_address.end(), [&](size_t a, size_t b) { return addr(a) < addr(b); });
    std::vector<GradSpan> spans(all.size());
    if (all.empty()) return spans;
    const uintptr_t base = addr(by_address.front());
    for (size_t k = 0; k < by_address.size(); ++k) {
        const size_t i = by_address[k];
        CC_CHECK(all[i].grad.dtype == all[by_address.front()].grad.dtype, "gradient buckets: parameter '",
                 all[i].name, "' has a ", dtype_name(all[i].grad.dtype), " gradient, the others ",
                 dtype_name(all[by_address.front()].grad.dtype));
        CC_CHECK(!all[i].grad.empty() || all[i].grad.numel() == 0, "gradient buckets: '", all[i].name,
                 "' has no gradient tensor");
        const size_t off = size_t(addr(i) - base);
        // The slot runs to the next gradient in memory (the arena's alignment padding);
        // the last one ends with its own bytes.
        const size_t end = k + 1 < by_address.size() ? size_t(addr(by_address[k + 1]) - base) : off + all[i].grad.bytes();
        CC_CHECK(end >= off + all[i].grad.bytes(), "gradient buckets: gradients of '", all[i].name,
                 "' and the next parameter overlap");
        spans[i] = GradSpan{i, off, end - off};
    }
    return spans;
}

GradReducer::GradReducer(ParameterSet& params, Collectives& coll, size_t cap_bytes)
    : params_(params), coll_(coll), cap_(cap_bytes) {
    CC_CHECK(cap_bytes > 0, "gradient buckets need a positive size");
    CC_CHECK(params.finalized(), "gradient buckets: the parameter set is not laid out yet");
    spans_ = grad_spans(params);
    seen_.assign(spans_.size(), false);
}

void GradReducer::begin() {
    std::fill(seen_.begin(), seen_.end(), false);
    started_early_ = 0;
    next_ = 0;
    if (!planned_) {
        recorded_.clear();
        return;
    }
    for (size_t b = 0; b < buckets_.size(); ++b) pending_[b] = buckets_[b].params.size();
}

void GradReducer::ready(size_t first, size_t count) {
    CC_CHECK(first + count <= spans_.size(), "gradient buckets: parameters [", first, ", ", first + count,
             ") outside the ", spans_.size(), " of the model");
    // Last parameter of the range first: a layer's range follows the layer above it in
    // memory only if the range is walked downwards (backward order), which keeps the
    // recorded order made of memory neighbours, so buckets fill up to the cap.
    for (size_t i = first + count; i-- > first;) {
        if (seen_[i]) continue;  // announced twice (harmless): counted once
        seen_[i] = true;
        if (!planned_) {
            recorded_.push_back(i);
            continue;
        }
        --pending_[bucket_of_[i]];
    }
    if (!planned_) return;
    while (next_ < buckets_.size() && pending_[next_] == 0) {
        start(next_++);
        ++started_early_;
    }
}

void GradReducer::finish() {
    if (!planned_) plan_from_recording();
    while (next_ < buckets_.size()) start(next_++);
    coll_.wait_all();
}

void GradReducer::plan_from_recording() {
    // Recorded order first; gradients never announced (none, for ClipModel) after them,
    // last parameter first (the usual backward direction).
    std::vector<GradSpan> order;
    for (size_t i : recorded_) order.push_back(spans_[i]);
    for (size_t i = spans_.size(); i-- > 0;)
        if (!seen_[i]) order.push_back(spans_[i]);
    buckets_ = plan_grad_buckets(order, cap_);
    bucket_of_.assign(spans_.size(), 0);
    for (size_t b = 0; b < buckets_.size(); ++b)
        for (size_t i : buckets_[b].params) bucket_of_[i] = b;
    pending_.assign(buckets_.size(), 0);
    planned_ = true;
    next_ = 0;
}

void GradReducer::start(size_t b) {
    const GradBucket& bk = buckets_[b];
    // The bucket's bytes as one flat tensor of the gradients' dtype. spans_[0] is
    // parameter 0's span, so this is the lowest gradient address.
    const DType dt = params_[0].grad.dtype;
    char* base = static_cast<char*>(params_[0].grad.data) - spans_[0].offset;
    const size_t esize = dtype_size(dt);
    CC_CHECK(bk.offset % esize == 0 && bk.bytes % esize == 0, "gradient buckets: bucket ", b,
             " is not a whole number of ", dtype_name(dt), " elements");
    coll_.allreduce_sum_start(Tensor{base + bk.offset, dt, Shape{int64_t(bk.bytes / esize)}});
}

}  // namespace curaclip
