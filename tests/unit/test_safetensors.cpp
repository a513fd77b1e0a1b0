// io/safetensors: the reader and writer of the safetensors format
// (https://huggingface.co/docs/safetensors): the reference writer's byte layout, exact
// F16/BF16 widening, and damaged files refused with errors naming the file and tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "tests/common/test_files.h"

namespace curaclip {
namespace {

using testing::expect_error;
using testing::read_file_bytes;
using testing::TempDir;
using testing::write_file_bytes;

// A safetensors file from a header text and a data section, byte for byte.
void write_raw(const std::string& path, const std::string& header, const std::vector<uint8_t>& data,
               uint64_t claimed_len = UINT64_MAX) {
    const uint64_t n = claimed_len == UINT64_MAX ? header.size() : claimed_len;
    std::string b(8, '\0');
    for (int i = 0; i < 8; ++i) b[size_t(i)] = char(uint8_t(n >> (8 * i)));
    b += header;
    b.append(data.begin(), data.end());
    write_file_bytes(path, b);
}

std::vector<uint8_t> u16_bytes(const std::vector<uint16_t>& v) {
    std::vector<uint8_t> b(v.size() * 2);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
}

TEST(Safetensors, WritesTheReferenceLayout) {
    TempDir dir;
    const std::string p = dir / "a.safetensors";
    const float b[2] = {1.0f, -2.5f}, a[1] = {3.0f};
    io::write_safetensors(p, {{"b", {2}, b}, {"a", {}, a}}, {});
    // What safetensors.torch.save_file writes for {"b": tensor([1, -2.5]), "a": tensor(3.)}:
    // names sorted, data in that order, header padded with spaces to a multiple of 8.
    std::string header = R"({"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
    header.append((8 - header.size() % 8) % 8, ' ');
    std::string want(8, '\0');
    for (int i = 0; i < 8; ++i) want[size_t(i)] = char(uint8_t(header.size() >> (8 * i)));
    want += header;
    const float data[3] = {3.0f, 1.0f, -2.5f};
    want.append(reinterpret_cast<const char*>(data), sizeof data);
    EXPECT_EQ(read_file_bytes(p), want);
    EXPECT_EQ(header.size() % 8, 0u);
}

TEST(Safetensors, RoundTripWithMetadata) {
    TempDir dir;
    const std::string p = dir / "m.safetensors";
    std::vector<float> w(2 * 3 * 4);
    for (size_t i = 0; i < w.size(); ++i) w[i] = float(i) * 0.25f - 1.0f;
    const float s = 4.6052f;
    io::write_safetensors(p, {{"w", {2, 3, 4}, w.data()}, {"logit_scale", {}, &s}, {"empty", {0, 5}, nullptr}},
                          {{"format", "pt"}, {"note", "line 1\nline \"2\""}});
    const io::SafetensorsFile f(p);
    EXPECT_EQ(f.path(), p);
    EXPECT_EQ(f.names(), (std::vector<std::string>{"empty", "logit_scale", "w"}));
    EXPECT_EQ(f.metadata().at("format"), "pt");
    EXPECT_EQ(f.metadata().at("note"), "line 1\nline \"2\"");
    EXPECT_EQ(f.tensor("w").shape, (std::vector<int64_t>{2, 3, 4}));
    EXPECT_EQ(f.tensor("w").dtype, "F32");
    EXPECT_EQ(f.read_f32("w"), w);
    EXPECT_EQ(f.read_f32("logit_scale"), std::vector<float>{s});
    EXPECT_TRUE(f.tensor("logit_scale").shape.empty());
    EXPECT_TRUE(f.read_f32("empty").empty());
    EXPECT_TRUE(f.has("w"));
    EXPECT_FALSE(f.has("v"));
    EXPECT_EQ((f.data_start() - 8) % 8, 0u);
    // Rewriting replaces the file (temporary + rename), leaving no temporary.
    io::write_safetensors(p, {{"logit_scale", {}, &s}}, {});
    EXPECT_EQ(io::SafetensorsFile(p).names(), std::vector<std::string>{"logit_scale"});
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path), {}), 1);
}

TEST(Safetensors, HalfAndBfloat16WidenExactly) {
    TempDir dir;
    const std::string p = dir / "h.safetensors";
    // F16: 1, -2, 65504 (max), 2^-14 (min normal), 2^-24 (min subnormal), 3 * 2^-24, -0, inf, 1/3 rounded
    const std::vector<uint16_t> h = {0x3C00, 0xC000, 0x7BFF, 0x0400, 0x0001, 0x0003, 0x8000, 0x7C00, 0x3555};
    // BF16: 1, -3, 3.140625, 2^-133 (subnormal), -inf
    const std::vector<uint16_t> bf = {0x3F80, 0xC040, 0x4049, 0x0001, 0xFF80};
    std::vector<uint8_t> data = u16_bytes(h);
    const auto bfb = u16_bytes(bf);
    data.insert(data.end(), bfb.begin(), bfb.end());
    const std::string header = R"({"h":{"dtype":"F16","shape":[9],"data_offsets":[0,18]},)"
                               R"("b":{"dtype":"BF16","shape":[5],"data_offsets":[18,28]}})";
    write_raw(p, header, data);
    const io::SafetensorsFile f(p);
    const std::vector<float> hv = f.read_f32("h");
    const float inf = std::numeric_limits<float>::infinity();
    const std::vector<float> want_h = {1.0f, -2.0f, 65504.0f, std::ldexp(1.0f, -14), std::ldexp(1.0f, -24),
                                       3 * std::ldexp(1.0f, -24), -0.0f, inf, 0.333251953125f};
    ASSERT_EQ(hv.size(), want_h.size());
    for (size_t i = 0; i < hv.size(); ++i) EXPECT_EQ(hv[i], want_h[i]) << i;
    EXPECT_TRUE(std::signbit(hv[6]));
    const std::vector<float> bv = f.read_f32("b");
    EXPECT_EQ(bv, (std::vector<float>{1.0f, -3.0f, 3.140625f, std::ldexp(1.0f, -133), -inf}));
    // Every half value: (-1)^s 2^(e-15) (1 + m/1024), subnormals 2^-24 m, NaNs stay NaN.
    for (uint32_t x = 0; x < 65536; ++x) {
        const float got = io::half_bits_to_float(uint16_t(x));
        const int s = x >> 15, e = (x >> 10) & 31, m = x & 1023;
        if (e == 31) {
            EXPECT_TRUE(m ? std::isnan(got) : std::isinf(got)) << x;
            continue;
        }
        const double mag = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(1.0 + m / 1024.0, e - 15);
        ASSERT_EQ(double(got), s ? -mag : mag) << "half bits " << x;
    }
}

TEST(Safetensors, RefusesDamagedFiles) {
    TempDir dir;
    const std::string p = dir / "bad.safetensors";
    const std::vector<uint8_t> eight(8, 0);
    const std::string ok = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

    expect_error([&] { io::SafetensorsFile f(dir / "none.safetensors"); }, {"none.safetensors", "does not exist"});
    write_file_bytes(p, "abc");
    expect_error([&] { io::SafetensorsFile f(p); }, {p, "3 bytes", "too short"});
    write_raw(p, ok, eight, 1000);
    expect_error([&] { io::SafetensorsFile f(p); }, {p, "header length 1000", "past the end"});
    write_raw(p, "{\"t\": [", eight);
    expect_error([&] { io::SafetensorsFile f(p); }, {p, "not valid JSON"});
    write_raw(p, "[1, 2]", eight);
    expect_error([&] { io::SafetensorsFile f(p); }, {p, "not a JSON object"});
    // Truncated: the data section ends before the tensor's bytes.
    write_raw(p, ok, {0, 0, 0, 0});
    const std::string ok_len = std::to_string(8 + ok.size());
    expect_error([&] { io::SafetensorsFile f(p); },
                 {p, "is truncated", "it is " + std::to_string(8 + ok.size() + 4) + " bytes",
                  "header needs " + std::to_string(8 + ok.size() + 8), "1 tensor lies past the end of the file: 't'",
                  "[0, 8] out of range", "4-byte data section"});
    write_raw(p, R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight);
    expect_error([&] { io::SafetensorsFile f(p); }, {p, "tensor 't'", "8 bytes", "shape [3]", "needs 12"});
    write_raw(p, R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"u":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
              eight);
    expect_error([&] { io::SafetensorsFile f(p); }, {p, "'t'", "'u'", "overlap"});
    write_raw(p, R"({"t":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", eight);
    expect_error([&] { io::SafetensorsFile f(p); }, {p, "tensor 't'", "unknown dtype 'Q4'"});
    write_raw(p, R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight);
    expect_error([&] { io::SafetensorsFile f(p); }, {p, "tensor 't'", "non-negative"});
    write_raw(p, R"({"t":{"dtype":"F32","data_offsets":[0,8]}})", eight);
    expect_error([&] { io::SafetensorsFile f(p); }, {p, "tensor 't'", "dtype, shape and data_offsets"});

    // A byte count past 2^64 is "too large", not a wrapped or saturated number.
    write_raw(p, R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", eight);
    expect_error([&] { io::SafetensorsFile f(p); }, {p, "tensor 't'", "[4294967296,4294967296] of F32 is too large"});
    try {
        io::SafetensorsFile f(p);
    } catch (const std::exception& e) {
        EXPECT_EQ(std::string(e.what()).find("18446744073709551615"), std::string::npos) << e.what();
    }
    // An empty tensor with huge other dimensions: 0 elements, no overflow.
    write_raw(p, R"({"t":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904,0],"data_offsets":[0,0]}})", {});
    EXPECT_EQ(io::SafetensorsFile(p).tensor("t").numel(), 0);

    // A PyTorch checkpoint: torch.save's zip archive or a bare pickle, with the conversion.
    for (const std::string& start : {std::string("PK\x03\x04\x14\x00\x00\x00\x08\x00", 10),
                                     std::string("\x80\x02\x7dq\x00(X\x06\x00\x00", 10), std::string("\x80\x05", 2)}) {
        write_file_bytes(dir / "model.bin", start + std::string(64, 'x'));
        expect_error([&] { io::SafetensorsFile f(dir / "model.bin"); },
                     {dir / "model.bin", "is a PyTorch checkpoint", "not a safetensors file",
                      "save_file(torch.load('" + std::string(dir / "model.bin") + "', weights_only=True), 'model.safetensors')"});
    }
    // ... but a real safetensors header whose length happens to begin 0x80 0x02 is read.
    {
        std::string h = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
        h.append(0x280 - h.size(), ' ');
        write_raw(p, h, eight);
        EXPECT_EQ(read_file_bytes(p).substr(0, 2), std::string("\x80\x02", 2));
        EXPECT_EQ(io::SafetensorsFile(p).names(), std::vector<std::string>{"t"});
    }

    // A well-formed file: the wrong dtype and a missing tensor name themselves.
    write_raw(p, R"({"__metadata__":{"format":"pt"},"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", eight);
    const io::SafetensorsFile f(p);
    expect_error([&] { f.read_f32("ids"); }, {p, "tensor 'ids'", "dtype I64", "expected F32, F16 or BF16"});
    expect_error([&] { f.tensor("visual.proj"); }, {p, "no tensor 'visual.proj'"});
    EXPECT_EQ(f.read_bytes("ids"), eight);
}

TEST(Safetensors, TruncatedFileNamesEveryTensorPastTheEnd) {
    // 60 tensors of 4 bytes each, in name order; the cut keeps the data of the first 3 only:
    // all 57 others are named (the first 10 of them, in file order) with the sizes.
    TempDir dir;
    const std::string p = dir / "cut.safetensors";
    std::vector<float> v(1, 1.0f);
    std::vector<std::string> names;
    std::vector<io::SafetensorsOut> ts;
    for (int i = 0; i < 60; ++i) names.push_back("blocks." + std::string(i < 10 ? "0" : "") + std::to_string(i) + ".w");
    for (const auto& n : names) ts.push_back({n, {1}, v.data()});
    io::write_safetensors(p, ts, {});
    const std::string whole = read_file_bytes(p);
    const size_t data_start = whole.size() - 240;
    write_file_bytes(p, whole.substr(0, data_start + 14));  // 3 whole tensors and 2 bytes of the 4th
    std::vector<std::string> want = {p, "is truncated", "it is " + std::to_string(data_start + 14) + " bytes",
                                     "header needs " + std::to_string(whole.size()),
                                     "57 tensors lie past the end of the file: 'blocks.03.w', 'blocks.04.w'",
                                     "'blocks.12.w' and 47 more"};
    expect_error([&] { io::SafetensorsFile f(p); }, want);
    try {
        io::SafetensorsFile f(p);
    } catch (const std::exception& e) {
        EXPECT_EQ(std::string(e.what()).find("blocks.13.w"), std::string::npos) << e.what();
        EXPECT_EQ(std::string(e.what()).find("blocks.02.w"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace curaclip
