#include "backend/arena.h"

#include <cstdio>
#include <utility>

#include "backend/backend.h"

namespace curaclip {

Arena::Arena(Backend& backend, size_t capacity, std::string name)
    : backend_(&backend), capacity_(capacity), name_(std::move(name)) {
    if (capacity_ > 0) {
        base_ = static_cast<char*>(backend_->alloc(capacity_));
        backend_->memset_zero(base_, capacity_);
    }
}

Arena::~Arena() {
    if (backend_ && base_) backend_->free(base_);
}

Arena::Arena(Arena&& o) noexcept { *this = std::move(o); }

Arena& Arena::operator=(Arena&& o) noexcept {
    if (this != &o) {
        if (backend_ && base_) backend_->free(base_);
        backend_ = std::exchange(o.backend_, nullptr);
        base_ = std::exchange(o.base_, nullptr);
        capacity_ = std::exchange(o.capacity_, 0);
        used_ = std::exchange(o.used_, 0);
        name_ = std::move(o.name_);
    }
    return *this;
}

Tensor Arena::alloc(Shape shape, DType dtype) {
    const size_t bytes = size_t(shape.numel()) * dtype_size(dtype);
    const size_t offset = (used_ + kAlign - 1) / kAlign * kAlign;
    used_ = offset + bytes;
    if (measuring()) return Tensor{nullptr, dtype, shape};
    CC_CHECK(used_ <= capacity_, "arena '", name_, "' overflow: needs ", used_, " bytes, has ",
             capacity_);
    return Tensor{base_ + offset, dtype, shape};
}

std::string format_bytes(size_t bytes) {
    char buf[64];
    const double b = double(bytes);
    if (b >= 1024.0 * 1024 * 1024) std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024) std::snprintf(buf, sizeof buf, "%.2f MiB", b / (1024.0 * 1024));
    else if (b >= 1024.0) std::snprintf(buf, sizeof buf, "%.2f KiB", b / 1024.0);
    else std::snprintf(buf, sizeof buf, "%zu B", bytes);
    return buf;
}

}  // namespace curaclip
