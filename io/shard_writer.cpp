#include "io/shard_writer.h"

#include <unistd.h>

#include <algorithm>

#include "core/check.h"
#include "io/dataset_reader.h"
#include "io/dataset_writer.h"
#include "io/durable_file.h"

namespace curaclip::io {
namespace {

using Lock = std::lock_guard<std::recursive_mutex>;

// Why the HDF5 call that just failed failed (read before any other HDF5 call): the
// system's reason where HDF5 names one ("No space left on device (disk full)").
std::string h5_why() {
    const std::string r = h5_system_reason();
    return r.empty() ? " (disk full, or the file system refused the write?)" : ": " + r;
}


// Rows per block written at once (and per chunk of the small datasets).
constexpr int64_t kBlockRows = 256;

H5Id string_type() {
    H5Id t(H5Tcopy(H5T_C_S1));
    H5Tset_size(t.get(), H5T_VARIABLE);
    H5Tset_cset(t.get(), H5T_CSET_UTF8);
    return t;
}

// An extendible dataset [0, dims...] chunked along rows.
H5Id create_extendible(hid_t file, const std::string& path, const char* name, hid_t type,
                       std::vector<hsize_t> row_dims, hsize_t chunk_rows) {
    std::vector<hsize_t> dims = {0}, maxdims = {H5S_UNLIMITED}, chunk = {chunk_rows};
    for (hsize_t d : row_dims) {
        dims.push_back(d);
        maxdims.push_back(d);
        chunk.push_back(d);
    }
    H5Id space(H5Screate_simple(int(dims.size()), dims.data(), maxdims.data()));
    H5Id dcpl = reproducible_dcpl();
    CC_REQUIRE(space.valid() && H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data()) >= 0, path,
             ": cannot set up dataset '", name, "'");
    H5Id d(H5Dcreate2(file, name, type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
    CC_REQUIRE(d.valid(), path, ": cannot create dataset '", name, "'", h5_why());
    return d;
}

// Appends `n` rows from `data` (mem_type) to the extendible dataset d.
void append_rows(const H5Id& d, hid_t mem_type, int64_t at, int64_t n, const void* data,
                 const std::string& path, const char* name) {
    if (n == 0) return;
    H5Id space0(H5Dget_space(d.get()));
    const int nd = H5Sget_simple_extent_ndims(space0.get());
    std::vector<hsize_t> dims(static_cast<size_t>(nd));
    H5Sget_simple_extent_dims(space0.get(), dims.data(), nullptr);
    dims[0] = hsize_t(at + n);
    CC_REQUIRE(H5Dset_extent(d.get(), dims.data()) >= 0, path, ": cannot extend dataset '", name, "'", h5_why());
    H5Id space(H5Dget_space(d.get()));
    std::vector<hsize_t> start(size_t(nd), 0), count = dims;
    start[0] = hsize_t(at);
    count[0] = hsize_t(n);
    H5Id mspace(H5Screate_simple(nd, count.data(), nullptr));
    CC_REQUIRE(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) >= 0 &&
                 H5Dwrite(d.get(), mem_type, mspace.get(), space.get(), H5P_DEFAULT, data) >= 0,
             path, ": writing rows [", at, ", ", at + n, ") of dataset '", name, "' failed", h5_why());
}

void append_strings(const H5Id& d, int64_t at, const std::vector<std::string>& v, const std::string& path,
                    const char* name) {
    std::vector<const char*> ptrs(v.size());
    for (size_t i = 0; i < v.size(); ++i) ptrs[i] = v[i].c_str();
    H5Id t = string_type();
    append_rows(d, t.get(), at, int64_t(v.size()), ptrs.data(), path, name);
}

}  // namespace

H5Id reproducible_fcpl() {
    Lock lock(hdf5_mutex());
    H5Id p(H5Pcreate(H5P_FILE_CREATE));
    CC_REQUIRE(p.valid() && H5Pset_obj_track_times(p.get(), 0) >= 0, "cannot make an HDF5 file-creation list");
    return p;
}

H5Id reproducible_dcpl() {
    Lock lock(hdf5_mutex());
    H5Id p(H5Pcreate(H5P_DATASET_CREATE));
    CC_REQUIRE(p.valid() && H5Pset_obj_track_times(p.get(), 0) >= 0, "cannot make an HDF5 dataset-creation list");
    return p;
}

ShardWriter::ShardWriter(const std::string& path, const ShardSpec& spec)
    : path_(path), tmp_(path + ".tmp"), spec_(spec) {
    CC_REQUIRE(spec.image_size > 0 && spec.channels > 0 && spec.context_length >= 2, path, ": bad shard shape (image ",
             spec.image_size, ", channels ", spec.channels, ", context ", spec.context_length, ")");
    CC_REQUIRE(!path_exists(path_), "refusing to overwrite existing file ", path_);
    CC_REQUIRE(!path_exists(tmp_), "temporary file ", tmp_, " exists (another prep writing it?)");
    image_bytes_ = size_t(spec.image_size) * size_t(spec.image_size) * size_t(spec.channels);
    Lock lock(hdf5_mutex());
    h5_quiet();
    H5Id fcpl = reproducible_fcpl();
    file_ = H5Id(H5Fcreate(tmp_.c_str(), H5F_ACC_EXCL, fcpl.get(), H5P_DEFAULT));
    CC_REQUIRE(file_.valid(), "cannot create ", tmp_, "", h5_why());
    try {
        const hid_t f = file_.get();
        const hsize_t S = hsize_t(spec.image_size), C = hsize_t(spec.channels);
        images_ = create_extendible(f, tmp_, "/images", H5T_STD_U8LE, {S, S, C},
                                    hsize_t(image_chunk_rows(1 << 30, image_bytes_)));
        tokens_ = create_extendible(f, tmp_, "/tokens", H5T_STD_I32LE, {hsize_t(spec.context_length)}, kBlockRows);
        H5Id st = string_type();
        captions_ = create_extendible(f, tmp_, "/captions", st.get(), {}, kBlockRows);
        keys_ = create_extendible(f, tmp_, "/keys", st.get(), {}, kBlockRows);
        if (spec.labels) labels_ = create_extendible(f, tmp_, "/labels", H5T_STD_I32LE, {}, kBlockRows);
        if (spec.image_ids) image_ids_ = create_extendible(f, tmp_, "/image_ids", H5T_STD_I64LE, {}, kBlockRows);
    } catch (...) {
        close_and_remove();
        throw;
    }
}

ShardWriter::~ShardWriter() {
    if (!finished_) close_and_remove();
}

void ShardWriter::close_and_remove() noexcept {
    Lock lock(hdf5_mutex());
    for (H5Id* d : {&images_, &tokens_, &captions_, &keys_, &labels_, &image_ids_}) d->reset();
    file_.reset();
    ::unlink(tmp_.c_str());
}

void ShardWriter::append(const uint8_t* image, const int32_t* tokens, const std::string& caption,
                         const std::string& key, int32_t label, int64_t image_id) {
    CC_REQUIRE(!finished_, path_, ": append after finish");
    b_images_.insert(b_images_.end(), image, image + image_bytes_);
    b_tokens_.insert(b_tokens_.end(), tokens, tokens + spec_.context_length);
    b_captions_.push_back(caption);
    b_keys_.push_back(key);
    if (spec_.labels) b_labels_.push_back(label);
    if (spec_.image_ids) b_image_ids_.push_back(image_id);
    ++rows_;
    if (int64_t(b_captions_.size()) >= kBlockRows) flush_block();
}

void ShardWriter::flush_block() {
    const int64_t n = int64_t(b_captions_.size());
    if (n == 0) return;
    Lock lock(hdf5_mutex());
    append_rows(images_, H5T_NATIVE_UINT8, written_, n, b_images_.data(), tmp_, "/images");
    append_rows(tokens_, H5T_NATIVE_INT32, written_, n, b_tokens_.data(), tmp_, "/tokens");
    append_strings(captions_, written_, b_captions_, tmp_, "/captions");
    append_strings(keys_, written_, b_keys_, tmp_, "/keys");
    if (spec_.labels) append_rows(labels_, H5T_NATIVE_INT32, written_, n, b_labels_.data(), tmp_, "/labels");
    if (spec_.image_ids)
        append_rows(image_ids_, H5T_NATIVE_INT64, written_, n, b_image_ids_.data(), tmp_, "/image_ids");
    written_ += n;
    b_images_.clear();
    b_tokens_.clear();
    b_captions_.clear();
    b_keys_.clear();
    b_labels_.clear();
    b_image_ids_.clear();
}

void ShardWriter::set_attr(const std::string& name, const std::string& value) {
    str_attrs_.emplace_back(name, value);
}
void ShardWriter::set_attr(const std::string& name, int64_t value) { int_attrs_.emplace_back(name, value); }

void ShardWriter::finish() {
    CC_REQUIRE(!finished_, path_, ": finish called twice");
    try {
        Lock lock(hdf5_mutex());
        flush_block();
        const hid_t f = file_.get();
        auto attr = [&](const std::string& name, hid_t type, const void* value) {
            H5Id space(H5Screate(H5S_SCALAR));
            H5Id a(H5Acreate2(f, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT));
            CC_REQUIRE(a.valid() && H5Awrite(a.get(), type, value) >= 0, tmp_, ": cannot write attribute '", name,
                     "'", h5_why());
        };
        attr("format_version", H5T_NATIVE_INT64, &kDatasetFormatVersion);
        const int64_t is = spec_.image_size, ch = spec_.channels, ctx = spec_.context_length;
        attr("image_size", H5T_NATIVE_INT64, &is);
        attr("channels", H5T_NATIVE_INT64, &ch);
        attr("context_length", H5T_NATIVE_INT64, &ctx);
        for (const auto& [k, v] : int_attrs_) attr(k, H5T_NATIVE_INT64, &v);
        H5Id st = string_type();
        for (const auto& [k, v] : str_attrs_) {
            const char* s = v.c_str();
            attr(k, st.get(), &s);
        }
        CC_REQUIRE(H5Fflush(f, H5F_SCOPE_GLOBAL) >= 0, tmp_, ": flushing failed", h5_why());
        for (H5Id* d : {&images_, &tokens_, &captions_, &keys_, &labels_, &image_ids_}) {
            if (!d->valid()) continue;
            CC_REQUIRE(H5Dclose(d->release()) >= 0, tmp_, ": closing a dataset failed", h5_why());
        }
        if (H5Fclose(file_.release()) < 0) {
            note_hdf5_close_failure();
            CC_USER_FAIL(tmp_, ": closing the file failed", h5_why());
        }
    } catch (...) {
        close_and_remove();
        finished_ = true;
        throw;
    }
    finished_ = true;
    publish_new_file(tmp_, path_);
}

}  // namespace curaclip::io
