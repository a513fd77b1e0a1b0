// Arena: one block of backend memory per kind (parameters, gradients,
// optimizer state, activations), carved into tensors by a bump allocator.
//
// Sizes are known before step 1 (as in llm.c): code that lays out tensors runs
// once against a *measuring* arena (no memory, just a byte count) and once
// against the real one. Same code path, so the two can never disagree.
#pragma once

#include <cstddef>
#include <string>

#include "core/tensor.h"

namespace curaclip {

class Backend;

class Arena {
public:
    // A measuring arena: alloc() hands out null tensors and only counts bytes.
    Arena() = default;
    // A real arena of `capacity` bytes on `backend`, zero-filled.
    Arena(Backend& backend, size_t capacity, std::string name);
    ~Arena();
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;
    Arena(Arena&& o) noexcept;
    Arena& operator=(Arena&& o) noexcept;

    Tensor alloc(Shape shape, DType dtype);

    bool measuring() const { return backend_ == nullptr; }
    size_t used() const { return used_; }
    size_t capacity() const { return capacity_; }
    const std::string& name() const { return name_; }
    // Forget every allocation (the memory stays); for re-laying out the same arena.
    void reset() { used_ = 0; }

    static constexpr size_t kAlign = 256;  // enough for any vector unit and cuBLAS

private:
    Backend* backend_ = nullptr;
    char* base_ = nullptr;
    size_t capacity_ = 0;
    size_t used_ = 0;
    std::string name_;
};

std::string format_bytes(size_t bytes);

}  // namespace curaclip
