#include "prep/fashion_mnist.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/check.h"

namespace curaclip::prep {
namespace {

bool file_exists(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// "X.gz" if present, else "X" if present, else an Error naming both.
std::string resolve(const std::string& path) {
    if (path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0) {
        CC_REQUIRE(file_exists(path), "idx file not found: ", path);
        return path;
    }
    if (file_exists(path + ".gz")) return path + ".gz";
    CC_REQUIRE(file_exists(path), "idx file not found: ", path, ".gz (nor ", path,
             "); install Debian's dataset-fashion-mnist or pass --source");
    return path;
}

class GzReader {
public:
    explicit GzReader(const std::string& path) : path_(path) {
        f_ = gzopen(path.c_str(), "rb");
        CC_REQUIRE(f_ != nullptr, "cannot open ", path, ": ", std::strerror(errno));
        gzbuffer(f_, 1 << 20);
    }
    ~GzReader() {
        if (f_) gzclose(f_);
    }
    GzReader(const GzReader&) = delete;
    GzReader& operator=(const GzReader&) = delete;

    // Reads exactly n bytes or throws naming the file and what was being read.
    void read(void* dst, size_t n, const char* what) {
        auto* p = static_cast<uint8_t*>(dst);
        while (n > 0) {
            const unsigned chunk = unsigned(std::min<size_t>(n, size_t(1) << 30));
            const int got = gzread(f_, p, chunk);
            if (got < 0) {
                int err = 0;
                const char* msg = gzerror(f_, &err);
                CC_USER_FAIL(path_, ": corrupt gzip data while reading ", what, " (", msg ? msg : "?", ")");
            }
            CC_REQUIRE(got > 0, path_, ": file truncated while reading ", what, " (", n,
                     " more bytes expected)");
            p += got;
            n -= size_t(got);
        }
    }
    uint32_t u32_be(const char* what) {
        uint8_t b[4];
        read(b, 4, what);
        return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | b[3];
    }

private:
    std::string path_;
    gzFile f_ = nullptr;
};

}  // namespace

IdxImages read_idx_images(const std::string& path_in, int64_t limit) {
    const std::string path = resolve(path_in);
    GzReader r(path);
    const uint32_t magic = r.u32_be("the magic number");
    CC_REQUIRE(magic == 0x00000803u, path, ": not an idx3-ubyte image file (magic 0x", std::hex, magic,
             ", expected 0x00000803)");
    IdxImages out;
    const uint32_t n = r.u32_be("the image count");
    const uint32_t rows = r.u32_be("the row count");
    const uint32_t cols = r.u32_be("the column count");
    CC_REQUIRE(rows > 0 && cols > 0 && rows <= 4096 && cols <= 4096, path, ": implausible image size ",
             rows, "x", cols);
    out.count = (limit >= 0 && uint64_t(limit) < n) ? limit : int64_t(n);
    out.rows = int(rows);
    out.cols = int(cols);
    out.pixels.resize(size_t(out.count) * rows * cols);
    r.read(out.pixels.data(), out.pixels.size(), "the pixels");
    return out;
}

std::vector<uint8_t> read_idx_labels(const std::string& path_in, int64_t limit) {
    const std::string path = resolve(path_in);
    GzReader r(path);
    const uint32_t magic = r.u32_be("the magic number");
    CC_REQUIRE(magic == 0x00000801u, path, ": not an idx1-ubyte label file (magic 0x", std::hex, magic,
             ", expected 0x00000801)");
    const uint32_t n = r.u32_be("the label count");
    const int64_t count = (limit >= 0 && uint64_t(limit) < n) ? limit : int64_t(n);
    std::vector<uint8_t> out(static_cast<size_t>(count));
    r.read(out.data(), out.size(), "the labels");
    return out;
}

FashionMnistSplit load_fashion_mnist(const std::string& dir, const std::string& split_in,
                                     int64_t limit) {
    const std::string split = split_in == "test" ? "t10k" : split_in;
    CC_REQUIRE(split == "train" || split == "t10k", "unknown Fashion-MNIST split '", split_in,
             "' (expected train or test)");
    FashionMnistSplit s;
    s.images_path = dir + "/" + split + "-images-idx3-ubyte";
    s.labels_path = dir + "/" + split + "-labels-idx1-ubyte";
    s.images = read_idx_images(s.images_path, limit);
    s.labels = read_idx_labels(s.labels_path, limit);
    CC_REQUIRE(s.images.rows == 28 && s.images.cols == 28, s.images_path, ": images are ",
             s.images.rows, "x", s.images.cols, ", Fashion-MNIST's are 28x28");
    CC_REQUIRE(int64_t(s.labels.size()) == s.images.count, s.labels_path, ": ", s.labels.size(),
             " labels for ", s.images.count, " images in ", s.images_path);
    for (size_t i = 0; i < s.labels.size(); ++i)
        CC_REQUIRE(s.labels[i] < 10, s.labels_path, ": label ", int(s.labels[i]), " of example ", i,
                 " is not a class id in [0, 10)");
    return s;
}

const std::vector<std::string>& fashion_mnist_classnames() {
    static const std::vector<std::string> names = {"T-shirt/top", "trouser", "pullover", "dress",
                                                   "coat",        "sandal",  "shirt",    "sneaker",
                                                   "bag",         "ankle boot"};
    return names;
}

}  // namespace curaclip::prep
