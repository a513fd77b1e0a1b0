// Runs `curaclip prep`'s image decoding (src/prep/image.h) on image files, for
// bench/image_parity_vs_pillow.py (pixels) and for timing (--repeat).
//
//   prep_image_tool [--size S] [--channels C] [--resize center_crop|pad|stretch]
//                   [--out FILE] [--repeat N] [--max-pixels N] IMAGE...
//   prep_image_tool --version      (libvips' version)
//
// --out: the S x S x C bytes of each image in turn, raw (a rejected image: zeros,
// and a line "reject FILE: DETAIL" on stderr). --repeat N: decodes every image N
// times on one thread (the files are read into memory first) and prints
// "ms_per_image X cpu_ms_per_image Y" (wall and process CPU time / (N * images);
// CPU time includes any libvips worker thread).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include <vips/vips.h>

#include "core/check.h"
#include "prep/image.h"

using namespace curaclip;
using namespace curaclip::prep;

int main(int argc, char** argv) {
    try {
        ImageOptions opt;
        std::string out_path;
        int repeat = 0;
        std::vector<std::string> files;
        for (int i = 1; i < argc; ++i) {
            const std::string a = argv[i];
            auto value = [&]() -> std::string {
                CC_CHECK(i + 1 < argc, a, " needs a value");
                return argv[++i];
            };
            if (a == "--size") opt.size = std::stoi(value());
            else if (a == "--channels") opt.channels = std::stoi(value());
            else if (a == "--resize") opt.resize = parse_resize_mode(value());
            else if (a == "--out") out_path = value();
            else if (a == "--repeat") repeat = std::stoi(value());
            else if (a == "--max-pixels") opt.max_pixels = std::stoll(value());
            else if (a == "--version") {
                init_image_codecs();
                std::printf("%s\n", vips_version_string());
                return 0;
            }
            else files.push_back(a);
        }
        CC_CHECK(!files.empty(), "usage: prep_image_tool [--size S] [--channels C] [--resize MODE] [--out FILE] "
                                 "[--repeat N] IMAGE...");
        init_image_codecs();
        std::vector<std::vector<uint8_t>> bytes;
        for (const auto& f : files) {
            std::ifstream in(f, std::ios::binary);
            CC_CHECK(in.good(), "cannot read ", f);
            bytes.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        }
        const size_t n_out = static_cast<size_t>(opt.size) * opt.size * opt.channels;
        std::vector<uint8_t> img(n_out);
        if (!out_path.empty()) {
            std::ofstream out(out_path, std::ios::binary);
            CC_CHECK(out.good(), "cannot write ", out_path);
            for (size_t i = 0; i < files.size(); ++i) {
                const DecodeResult r = decode_image(bytes[i].data(), bytes[i].size(), opt, img.data());
                if (r.reject) {
                    std::cerr << "reject " << files[i] << ": " << r.detail << "\n";
                    std::fill(img.begin(), img.end(), 0);
                }
                out.write(reinterpret_cast<const char*>(img.data()), static_cast<std::streamsize>(n_out));
            }
            CC_CHECK(out.good(), "cannot write ", out_path);
        }
        if (repeat > 0) {
            const auto t0 = std::chrono::steady_clock::now();
            const std::clock_t c0 = std::clock();
            for (int r = 0; r < repeat; ++r)
                for (const auto& b : bytes) (void)decode_image(b.data(), b.size(), opt, img.data());
            const double cpu = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            const double n = static_cast<double>(repeat) * static_cast<double>(bytes.size());
            std::printf("ms_per_image %.4f cpu_ms_per_image %.4f\n", 1e3 * s / n, 1e3 * cpu / n);
        }
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "prep_image_tool: " << e.what() << "\n";
        return 1;
    }
}
