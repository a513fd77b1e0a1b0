#include "io/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "io/durable_file.h"

namespace curaclip::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this reader copies bytes as they are");

namespace {

// The reference reader refuses headers over 100 MB; so does this one (a corrupt
// length must not allocate gigabytes).
constexpr uint64_t kMaxHeader = 100'000'000;

uint64_t read_u64_le(const unsigned char* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

// Reads [offset, offset + n) of `path` or fails naming the file.
std::vector<uint8_t> read_range(const std::string& path, uint64_t offset, uint64_t n, const std::string& what) {
    std::ifstream in(path, std::ios::binary);
    CC_REQUIRE(in, "safetensors file '", path, "': cannot open it for reading ", what);
    std::vector<uint8_t> buf(n);
    in.seekg(static_cast<std::streamoff>(offset));
    if (n > 0) in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(n));
    CC_REQUIRE(in && static_cast<uint64_t>(in.gcount()) == n, "safetensors file '", path, "': truncated while reading ",
               what, " (", n, " bytes at offset ", offset, ")");
    return buf;
}

}  // namespace

int64_t SafetensorsTensor::numel() const {
    for (int64_t d : shape)
        if (d == 0) return 0;  // before multiplying: [huge, huge, 0] must not overflow
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

size_t safetensors_dtype_size(const std::string& d) {
    if (d == "F64" || d == "I64" || d == "U64") return 8;
    if (d == "F32" || d == "I32" || d == "U32") return 4;
    if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
    if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
    return 0;
}

float half_bits_to_float(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);  // inf / NaN (payload kept)
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);  // normal: rebias 15 -> 127
    } else if (mant == 0) {
        bits = sign;  // +-0
    } else {
        // Subnormal half: normalise the mantissa into a normal float.
        int e = 113;  // exponent of 2^-14 in float bias, before shifting
        while ((mant & 0x400u) == 0) {
            mant <<= 1;
            --e;
        }
        mant &= 0x3FFu;
        bits = sign | (static_cast<uint32_t>(e) << 23) | (mant << 13);
    }
    return std::bit_cast<float>(bits);
}

float bf16_bits_to_float(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
    std::error_code ec;
    CC_REQUIRE(std::filesystem::is_regular_file(path, ec), "safetensors file '", path, "' does not exist or is not a file");
    const uint64_t size = std::filesystem::file_size(path, ec);
    CC_REQUIRE(!ec, "safetensors file '", path, "': cannot read its size: ", ec.message());
    // A PyTorch checkpoint (.pt/.bin) given where safetensors is expected: torch.save's zip
    // archive ("PK\3\4") or a bare pickle (protocol 2-5 opens with 0x80 0x02..0x05). Both can
    // also be the first bytes of a header length, so only when the file is not a plausible
    // safetensors file (header in range and opening with '{').
    const auto head = read_range(path, 0, std::min<uint64_t>(size, 9), "its first bytes");
    const bool zip = head.size() >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4;
    const bool pickle = head.size() >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5;
    const bool plausible = head.size() == 9 && head[8] == '{' && read_u64_le(head.data()) <= size - 9;
    CC_REQUIRE(!(zip || pickle) || plausible, "'", path, "' is a PyTorch checkpoint (",
               zip ? "a torch.save zip archive" : "a pickle", "), not a safetensors file; convert it with\n"
               "    python -c \"import torch; from safetensors.torch import save_file; save_file(torch.load('", path,
               "', weights_only=True), 'model.safetensors')\"\n(docs/interop.md; an open_clip training checkpoint "
               "holds its weights under 'state_dict': torch.load(...)['state_dict'])");
    CC_REQUIRE(size >= 8, "safetensors file '", path, "' is ", size,
               " bytes: too short for the 8-byte header length (truncated or not a safetensors file?)");
    const uint64_t n = read_u64_le(head.data());
    CC_REQUIRE(n <= kMaxHeader && n <= size - 8, "safetensors file '", path, "': header length ", n,
               " is past the end of the ", size, "-byte file (truncated or not a safetensors file?)");
    const auto header_bytes = read_range(path, 8, n, "the header");
    data_start_ = 8 + n;
    const uint64_t data_size = size - data_start_;

    nlohmann::json header;
    try {
        header = nlohmann::json::parse(header_bytes.begin(), header_bytes.end());
    } catch (const nlohmann::json::exception& e) {
        CC_USER_FAIL("safetensors file '", path, "': the header is not valid JSON (", e.what(), ")");
    }
    CC_REQUIRE(header.is_object(), "safetensors file '", path, "': the header is not a JSON object");

    std::vector<const SafetensorsTensor*> past_end;  // tensors whose bytes the file does not hold
    for (auto it = header.begin(); it != header.end(); ++it) {
        const std::string& key = it.key();
        const auto& v = it.value();
        if (key == "__metadata__") {
            CC_REQUIRE(v.is_object(), "safetensors file '", path, "': __metadata__ is not a JSON object");
            for (auto m = v.begin(); m != v.end(); ++m) {
                CC_REQUIRE(m.value().is_string(), "safetensors file '", path, "': __metadata__ entry '", m.key(),
                           "' is not a string");
                metadata_[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        const std::string where = "safetensors file '" + path + "', tensor '" + key + "'";
        CC_REQUIRE(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"), where,
                   ": expected an object with dtype, shape and data_offsets");
        CC_REQUIRE(v["dtype"].is_string(), where, ": dtype is not a string");
        SafetensorsTensor t;
        t.name = key;
        t.dtype = v["dtype"].get<std::string>();
        const size_t esize = safetensors_dtype_size(t.dtype);
        CC_REQUIRE(esize != 0, where, ": unknown dtype '", t.dtype, "'");
        CC_REQUIRE(v["shape"].is_array(), where, ": shape is not an array");
        for (const auto& d : v["shape"]) {
            CC_REQUIRE(d.is_number_integer() && d.get<int64_t>() >= 0, where, ": shape ", v["shape"].dump(),
                       " holds something other than a non-negative integer");
            t.shape.push_back(d.get<int64_t>());
        }
        const auto& off = v["data_offsets"];
        CC_REQUIRE(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
                   where, ": data_offsets ", off.dump(), " is not [begin, end]");
        t.begin = off[0].get<uint64_t>();
        t.end = off[1].get<uint64_t>();
        CC_REQUIRE(t.begin <= t.end, where, ": data_offsets [", t.begin, ", ", t.end, "] end before they begin");
        // prod(shape) * size without overflow: stop once past 2^64 (a factor is < 2^63); a zero
        // dimension makes it 0 whatever the others are.
        unsigned __int128 bytes = esize;
        if (std::find(t.shape.begin(), t.shape.end(), 0) != t.shape.end()) bytes = 0;
        for (int64_t d : t.shape) {
            if (bytes == 0) break;
            bytes *= static_cast<uint64_t>(d);
            if (bytes > (static_cast<unsigned __int128>(1) << 64)) break;
        }
        CC_REQUIRE(bytes <= std::numeric_limits<uint64_t>::max(), where, ": shape ", v["shape"].dump(), " of ",
                   t.dtype, " is too large (its byte count does not fit in 64 bits)");
        CC_REQUIRE(bytes == t.end - t.begin, where, ": ", t.end - t.begin, " bytes, but shape ", v["shape"].dump(),
                   " of ", t.dtype, " needs ", static_cast<uint64_t>(bytes));
        const auto [pos, inserted] = tensors_.emplace(key, std::move(t));
        if (inserted && pos->second.end > data_size) past_end.push_back(&pos->second);
    }

    // A truncated file: every tensor the cut leaves short, in file order (the first 10 named).
    if (!past_end.empty()) {
        std::sort(past_end.begin(), past_end.end(), [](const SafetensorsTensor* a, const SafetensorsTensor* b) {
            return a->begin != b->begin ? a->begin < b->begin : a->name < b->name;
        });
        uint64_t need = 0;
        for (const auto* t : past_end) need = std::max(need, t->end);
        std::string names;
        for (size_t i = 0; i < past_end.size() && i < 10; ++i)
            names += (i ? ", '" : "'") + past_end[i]->name + "'";
        if (past_end.size() > 10) names += " and " + std::to_string(past_end.size() - 10) + " more";
        CC_USER_FAIL("safetensors file '", path, "' is truncated: it is ", size, " bytes, but its header needs ",
                     data_start_ + need, " (", data_start_, " of header and ", need, " of data); ", past_end.size(),
                     past_end.size() == 1 ? " tensor lies" : " tensors lie", " past the end of the file: ", names,
                     " (first: '", past_end[0]->name, "' data_offsets [", past_end[0]->begin, ", ", past_end[0]->end,
                     "] out of range of the ", data_size, "-byte data section)");
    }

    // No two tensors may share bytes.
    std::vector<const SafetensorsTensor*> by_offset;
    for (const auto& [k, t] : tensors_)
        if (t.end > t.begin) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const SafetensorsTensor* a, const SafetensorsTensor* b) { return a->begin < b->begin; });
    for (size_t i = 1; i < by_offset.size(); ++i)
        CC_REQUIRE(by_offset[i]->begin >= by_offset[i - 1]->end, "safetensors file '", path, "': tensors '",
                   by_offset[i - 1]->name, "' [", by_offset[i - 1]->begin, ", ", by_offset[i - 1]->end, ") and '",
                   by_offset[i]->name, "' [", by_offset[i]->begin, ", ", by_offset[i]->end, ") overlap");
}

std::vector<std::string> SafetensorsFile::names() const {
    std::vector<std::string> out;
    out.reserve(tensors_.size());
    for (const auto& [k, t] : tensors_) out.push_back(k);
    return out;  // std::map: already sorted
}

const SafetensorsTensor& SafetensorsFile::tensor(const std::string& name) const {
    auto it = tensors_.find(name);
    CC_REQUIRE(it != tensors_.end(), "safetensors file '", path_, "' has no tensor '", name, "'");
    return it->second;
}

std::vector<uint8_t> SafetensorsFile::read_bytes(const std::string& name) const {
    const auto& t = tensor(name);
    return read_range(path_, data_start_ + t.begin, t.end - t.begin, "tensor '" + name + "'");
}

std::vector<float> SafetensorsFile::read_f32(const std::string& name) const {
    const auto& t = tensor(name);
    CC_REQUIRE(t.dtype == "F32" || t.dtype == "F16" || t.dtype == "BF16", "safetensors file '", path_, "', tensor '",
               name, "': dtype ", t.dtype, " cannot be read as floating point (expected F32, F16 or BF16)");
    const auto raw = read_bytes(name);
    const size_t n = static_cast<size_t>(t.numel());
    std::vector<float> out(n);
    if (n == 0) return out;  // (memcpy of an empty vector's null data is undefined)
    if (t.dtype == "F32") {
        std::memcpy(out.data(), raw.data(), n * 4);
    } else {
        for (size_t i = 0; i < n; ++i) {
            uint16_t b;
            std::memcpy(&b, raw.data() + 2 * i, 2);
            out[i] = t.dtype == "F16" ? half_bits_to_float(b) : bf16_bits_to_float(b);
        }
    }
    return out;
}

void write_safetensors(const std::string& path, const std::vector<SafetensorsOut>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    std::map<std::string, const SafetensorsOut*> sorted;
    for (const auto& t : tensors) {
        CC_REQUIRE(t.name != "__metadata__", "safetensors file '", path, "': a tensor may not be named __metadata__");
        CC_REQUIRE(sorted.emplace(t.name, &t).second, "safetensors file '", path, "': tensor '", t.name,
                   "' is given twice");
    }
    // The header, compact JSON in the reference writer's order.
    std::string header = "{";
    bool first = true;
    if (!metadata.empty()) {
        header += "\"__metadata__\":{";
        bool mfirst = true;
        for (const auto& [k, v] : metadata) {
            if (!mfirst) header += ",";
            mfirst = false;
            header += nlohmann::json(k).dump() + ":" + nlohmann::json(v).dump();
        }
        header += "}";
        first = false;
    }
    uint64_t offset = 0;
    for (const auto& [name, t] : sorted) {
        int64_t numel = 1;
        std::string shape = "[";
        for (size_t i = 0; i < t->shape.size(); ++i) {
            CC_REQUIRE(t->shape[i] >= 0, "safetensors file '", path, "': tensor '", name, "' has a negative dimension");
            numel *= t->shape[i];
            if (i) shape += ',';
            shape += std::to_string(t->shape[i]);
        }
        shape += "]";
        CC_REQUIRE(numel == 0 || t->data != nullptr, "safetensors file '", path, "': tensor '", name, "' has no data");
        const uint64_t bytes = static_cast<uint64_t>(numel) * 4;
        if (!first) header += ",";
        first = false;
        header += nlohmann::json(name).dump() + ":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":[" +
                  std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
        offset += bytes;
    }
    header += "}";
    header.append((8 - header.size() % 8) % 8, ' ');

    std::vector<uint8_t> buf(8 + header.size() + offset);
    const uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) buf[i] = static_cast<uint8_t>(n >> (8 * i));
    std::memcpy(buf.data() + 8, header.data(), header.size());
    uint8_t* p = buf.data() + 8 + header.size();
    for (const auto& [name, t] : sorted) {
        int64_t numel = 1;
        for (int64_t d : t->shape) numel *= d;
        const size_t bytes = static_cast<size_t>(numel) * 4;
        if (bytes) std::memcpy(p, t->data, bytes);
        p += bytes;
    }

    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    ::unlink(tmp.c_str());  // a stale temporary of this same process id
    write_new_file(tmp, buf.data(), buf.size());
    try {
        replace_durably(tmp, path);
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
}

}  // namespace curaclip::io
