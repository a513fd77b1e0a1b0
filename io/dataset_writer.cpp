#include "io/dataset_writer.h"

#include <sys/stat.h>

#include <algorithm>

#include "core/check.h"
#include "io/durable_file.h"

namespace curaclip::io {
namespace {

using Lock = std::lock_guard<std::recursive_mutex>;

// A dataset of `type` with dims; chunk_rows > 0 chunks along the first dim.
H5Id create(hid_t file, const std::string& path, const std::string& name, hid_t type,
            const std::vector<hsize_t>& dims, hsize_t chunk_rows) {
    H5Id space(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
    CC_CHECK(space.valid(), path, ": cannot make the dataspace of '", name, "'");
    H5Id dcpl(H5Pcreate(H5P_DATASET_CREATE));
    if (chunk_rows > 0) {
        std::vector<hsize_t> chunk = dims;
        chunk[0] = chunk_rows;
        CC_CHECK(H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data()) >= 0, path,
                 ": cannot set the chunking of '", name, "'");
    }
    H5Id d(H5Dcreate2(file, name.c_str(), type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
    CC_CHECK(d.valid(), path, ": cannot create dataset '", name, "'");
    return d;
}

void write(const H5Id& d, hid_t mem_type, const void* data, const std::string& path, const std::string& name) {
    CC_CHECK(H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0, path,
             ": writing dataset '", name, "' failed (out of memory?)");
}

void write_strings(hid_t file, const std::string& path, const std::string& name,
                   const std::vector<std::string>& v) {
    H5Id type(H5Tcopy(H5T_C_S1));
    H5Tset_size(type.get(), H5T_VARIABLE);
    H5Tset_cset(type.get(), H5T_CSET_UTF8);
    H5Id d = create(file, path, name, type.get(), {hsize_t(v.size())}, 0);
    std::vector<const char*> ptrs(v.size());
    for (size_t i = 0; i < v.size(); ++i) ptrs[i] = v[i].c_str();
    if (!v.empty()) write(d, type.get(), ptrs.data(), path, name);
}

}  // namespace

bool path_exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

int64_t image_chunk_rows(int64_t count, size_t row_bytes) {
    const int64_t rows = int64_t((size_t(256) << 10) / std::max<size_t>(row_bytes, 1));
    return std::clamp<int64_t>(rows, 1, std::max<int64_t>(count, 1));
}

void write_dataset(const std::string& path, const DatasetContents& d, const DatasetAttributes& a) {
    const int64_t n = d.count;
    const size_t row = size_t(d.image_size) * d.image_size * d.channels;
    CC_CHECK(n > 0, path, ": a dataset needs at least one example");
    CC_CHECK(d.image_size > 0 && d.channels > 0 && d.context_length >= 2, path,
             ": bad image size ", d.image_size, ", channels ", d.channels, " or context length ",
             d.context_length);
    CC_CHECK(d.images.size() == size_t(n) * row, path, ": /images holds ", d.images.size(),
             " bytes, expected ", n, "x", row);
    CC_CHECK(d.tokens.size() == size_t(n) * d.context_length, path, ": /tokens holds ", d.tokens.size(),
             " ids, expected ", n, "x", d.context_length);
    CC_CHECK(d.captions.size() == size_t(n), path, ": ", d.captions.size(), " captions, expected ", n);
    CC_CHECK(d.labels.empty() || d.labels.size() == size_t(n), path, ": ", d.labels.size(),
             " labels, expected ", n);
    CC_CHECK(d.corrupted.empty() || d.corrupted.size() == size_t(n), path, ": ", d.corrupted.size(),
             " corruption flags, expected ", n);
    CC_CHECK(d.image_ids.empty() || d.image_ids.size() == size_t(n), path, ": ", d.image_ids.size(),
             " image ids, expected ", n);
    CC_CHECK(!path_exists(path), "refusing to overwrite existing file ", path);
    const std::string tmp = path + ".tmp";
    CC_CHECK(!path_exists(tmp), "temporary file ", tmp,
             " exists (another prep writing it, or left by a crash: delete it)");

    // Built in memory, then written with checked system calls: a full disk is a clean
    // Error naming tmp and the reason, and never a half-closed HDF5 file (H5File::Mode::in_memory).
    {
        Lock lock(hdf5_mutex());
        H5File f(path, H5File::Mode::in_memory);
        const hid_t fid = f.id();
        const hsize_t N = hsize_t(n), S = hsize_t(d.image_size), C = hsize_t(d.channels);
        {
            H5Id ds = create(fid, path, "/images", H5T_STD_U8LE, {N, S, S, C},
                             hsize_t(image_chunk_rows(n, row)));
            write(ds, H5T_NATIVE_UINT8, d.images.data(), path, "/images");
        }
        {
            H5Id ds = create(fid, path, "/tokens", H5T_STD_I32LE, {N, hsize_t(d.context_length)}, 0);
            write(ds, H5T_NATIVE_INT32, d.tokens.data(), path, "/tokens");
        }
        write_strings(fid, path, "/captions", d.captions);
        if (!d.labels.empty()) {
            H5Id ds = create(fid, path, "/labels", H5T_STD_I32LE, {N}, 0);
            write(ds, H5T_NATIVE_INT32, d.labels.data(), path, "/labels");
        }
        if (!d.classnames.empty()) write_strings(fid, path, "/classnames", d.classnames);
        if (!d.image_ids.empty()) {
            H5Id ds = create(fid, path, "/image_ids", H5T_STD_I64LE, {N}, 0);
            write(ds, H5T_NATIVE_INT64, d.image_ids.data(), path, "/image_ids");
        }
        {
            std::vector<uint8_t> zeros;
            if (d.corrupted.empty()) zeros.assign(size_t(n), 0);
            H5Id ds = create(fid, path, "/corrupted", H5T_STD_U8LE, {N}, 0);
            write(ds, H5T_NATIVE_UINT8, d.corrupted.empty() ? zeros.data() : d.corrupted.data(), path,
                  "/corrupted");
        }
        f.set_attr("/", "format_version", int64_t(kDatasetFormatVersion));
        f.set_attr("/", "image_size", int64_t(d.image_size));
        f.set_attr("/", "channels", int64_t(d.channels));
        f.set_attr("/", "context_length", int64_t(d.context_length));
        f.set_attr("/", "tokenizer_id", a.tokenizer_id);
        f.set_attr("/", "source", a.source);
        f.set_attr("/", "creation_command", a.creation_command);
        for (const auto& [k, v] : a.extra) f.set_attr("/", k, v);
        for (const auto& [k, v] : a.extra_int) f.set_attr("/", k, v);
        f.write_image(tmp);  // removes tmp again on failure
    }
    publish_new_file(tmp, path);
}

}  // namespace curaclip::io
