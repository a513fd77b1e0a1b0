// safetensors files (https://huggingface.co/docs/safetensors): the weight format of
// open_clip, Hugging Face and most pretrained CLIP releases.
//
// FORMAT (matched from the reference reader/writer, safetensors 0.4):
//   8 bytes   N, the header length, unsigned 64-bit little-endian
//   N bytes   a UTF-8 JSON object: {"__metadata__": {str: str}, (optional)
//               "<name>": {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]}, ...}
//             padded with trailing spaces (the reference writer pads N to a multiple of 8)
//   rest      the data section; a tensor's bytes are [begin, end) of it, row-major,
//             little-endian.
//
// ERRORS. Everything a damaged or foreign file can get wrong is a curaclip::Error that
// names the file (and the tensor, where one is concerned): a missing or shorter-than-8-byte
// file, a header length past the end of the file, a header that is not a JSON object, an
// entry without dtype/shape/data_offsets, an unknown dtype, a negative dimension, offsets
// with end < begin or overlapping another tensor's, a byte size that is not
// prod(shape) * sizeof(dtype) (or does not fit in 64 bits: "too large"). A truncated file
// names every tensor whose bytes lie past its end (the first 10, then "and N more"), its size
// and the size its header needs; a PyTorch .pt/.bin (zip archive or pickle) is named as such,
// with the one-line conversion of docs/interop.md.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace curaclip::io {

// One tensor's entry in a safetensors header (https://huggingface.co/docs/safetensors).
struct SafetensorsTensor {
    std::string name;
    std::string dtype;              // as in the header: "F32", "F16", "BF16", "I64", ...
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;    // byte offsets within the data section

    int64_t numel() const;          // prod(shape); 1 for a 0-d scalar
};

// Bytes per element of a safetensors dtype name ("F32" -> 4); 0 for an unknown name.
size_t safetensors_dtype_size(const std::string& dtype);

// IEEE half / bfloat16 bit patterns widened to float, exactly (subnormals, inf and NaN kept).
float half_bits_to_float(uint16_t bits);
float bf16_bits_to_float(uint16_t bits);

class SafetensorsFile {
public:
    // Reads and validates the header (the data section is read on demand).
    explicit SafetensorsFile(const std::string& path);

    const std::string& path() const { return path_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }  // "__metadata__"
    std::vector<std::string> names() const;                                           // sorted
    bool has(const std::string& name) const { return tensors_.count(name) != 0; }
    // The entry of `name`; an Error naming the tensor and the file if absent.
    const SafetensorsTensor& tensor(const std::string& name) const;
    // The tensor's values, row-major: F32 as stored, F16/BF16 widened to float (exact).
    // Any other dtype is an Error naming the tensor, its dtype and the file.
    std::vector<float> read_f32(const std::string& name) const;
    // The tensor's raw bytes as stored in the file (any dtype).
    std::vector<uint8_t> read_bytes(const std::string& name) const;
    // Byte offset of the data section in the file (8 + header length).
    uint64_t data_start() const { return data_start_; }

private:
    std::string path_;
    std::map<std::string, std::string> metadata_;
    std::map<std::string, SafetensorsTensor> tensors_;
    uint64_t data_start_ = 0;
};

// Writes tensors (F32, little-endian, header keys sorted, 8-byte aligned header as the
// reference writer pads with spaces) durably via io/durable_file (temp file + rename).
// The byte layout is the reference writer's for all-F32 tensors: "__metadata__" first
// (omitted when empty), then the tensors by name, data in the same order, no gaps.
// Duplicate names, a negative dimension or a null data pointer for a non-empty tensor
// are Errors naming the tensor.
struct SafetensorsOut {
    std::string name;
    std::vector<int64_t> shape;
    const float* data;
};
void write_safetensors(const std::string& path, const std::vector<SafetensorsOut>& tensors,
                       const std::map<std::string, std::string>& metadata);

}  // namespace curaclip::io
