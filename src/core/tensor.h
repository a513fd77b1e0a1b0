// Tensor: a typed, shaped view of memory owned by an Arena on some backend.
//
// A Tensor never owns memory. Its data pointer is a *device* pointer of the
// backend that allocated it (host memory for the CPU backend), so model code
// passes Tensors to Backend ops and never dereferences them itself.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/check.h"

namespace curaclip {

enum class DType : uint8_t { f32, f64, bf16, i32, u8 };

inline size_t dtype_size(DType t) {
    switch (t) {
        case DType::f32: return 4;
        case DType::f64: return 8;
        case DType::bf16: return 2;
        case DType::i32: return 4;
        case DType::u8: return 1;
    }
    return 0;
}

inline const char* dtype_name(DType t) {
    switch (t) {
        case DType::f32: return "f32";
        case DType::f64: return "f64";
        case DType::bf16: return "bf16";
        case DType::i32: return "i32";
        case DType::u8: return "u8";
    }
    return "?";
}

inline bool is_float(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16; }

// Up to four dimensions, row-major (the last dimension is contiguous).
struct Shape {
    static constexpr int kMaxDims = 4;
    std::array<int64_t, kMaxDims> d{};
    int ndim = 0;

    Shape() = default;
    Shape(std::initializer_list<int64_t> dims) {
        CC_CHECK(dims.size() <= kMaxDims, "too many dimensions");
        for (int64_t v : dims) d[ndim++] = v;
    }
    template <typename Container>
    static Shape from(const Container& dims) {
        Shape s;
        CC_CHECK(dims.size() <= kMaxDims, "too many dimensions: ", dims.size());
        for (auto v : dims) s.d[s.ndim++] = int64_t(v);
        return s;
    }
    int64_t operator[](int i) const {
        if (i < 0) i += ndim;
        CC_CHECK(i >= 0 && i < ndim, "dimension ", i, " out of range for ", str());
        return d[i];
    }
    int64_t numel() const {
        int64_t n = 1;
        for (int i = 0; i < ndim; ++i) n *= d[i];
        return n;
    }
    // Product of all dimensions but the last: the "rows" of a row-major matrix view.
    int64_t rows() const { return ndim == 0 ? 1 : numel() / d[ndim - 1]; }
    int64_t cols() const { return ndim == 0 ? 1 : d[ndim - 1]; }
    bool operator==(const Shape& o) const {
        if (ndim != o.ndim) return false;
        for (int i = 0; i < ndim; ++i)
            if (d[i] != o.d[i]) return false;
        return true;
    }
    bool operator!=(const Shape& o) const { return !(*this == o); }
    std::string str() const {
        std::string s = "[";
        for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(d[i]);
        return s + "]";
    }
};

struct Tensor {
    void* data = nullptr;
    DType dtype = DType::f32;
    Shape shape;

    bool empty() const { return data == nullptr; }
    int64_t numel() const { return shape.numel(); }
    size_t bytes() const { return size_t(numel()) * dtype_size(dtype); }

    template <typename T>
    T* as() const { return static_cast<T*>(data); }

    // Same memory, another shape with the same number of elements.
    Tensor view(Shape s) const {
        CC_CHECK(s.numel() == numel(), "view ", s.str(), " of ", shape.str());
        return Tensor{data, dtype, s};
    }
    // Rows [begin, begin+count) of the leading dimension.
    Tensor slice_rows(int64_t begin, int64_t count) const {
        CC_CHECK(shape.ndim >= 1 && begin >= 0 && begin + count <= shape[0], "slice_rows ", begin,
                 "+", count, " of ", shape.str());
        Shape s = shape;
        s.d[0] = count;
        const int64_t row = shape[0] ? numel() / shape[0] : 0;
        return Tensor{static_cast<char*>(data) + size_t(begin * row) * dtype_size(dtype), dtype, s};
    }
};

}  // namespace curaclip
