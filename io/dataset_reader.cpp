#include "io/dataset_reader.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <numeric>

#include "core/check.h"
#include "io/dataset_writer.h"

namespace curaclip::io {
namespace {

using Lock = std::lock_guard<std::recursive_mutex>;

struct DsInfo {
    H5T_class_t cls = H5T_NO_CLASS;
    size_t size = 0;
    H5T_sign_t sign = H5T_SGN_ERROR;
    std::vector<int64_t> dims;
};

const char* class_name(H5T_class_t c) {
    switch (c) {
        case H5T_INTEGER: return "integer";
        case H5T_FLOAT: return "float";
        case H5T_STRING: return "string";
        default: return "other";
    }
}

DsInfo info(hid_t d) {
    DsInfo o;
    H5Id type(H5Dget_type(d));
    o.cls = H5Tget_class(type.get());
    o.size = H5Tget_size(type.get());
    if (o.cls == H5T_INTEGER) o.sign = H5Tget_sign(type.get());
    H5Id space(H5Dget_space(d));
    const int nd = H5Sget_simple_extent_ndims(space.get());
    if (nd > 0) {
        std::vector<hsize_t> dims(static_cast<size_t>(nd));
        H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
        o.dims.assign(dims.begin(), dims.end());
    }
    return o;
}

std::string dims_str(const std::vector<int64_t>& d) {
    std::string s = "[";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + "]";
}

// Reads the rows listed in sorted unique `rows` (first dim) of dataset d into
// dst, packed in that order: one H5Dread per run of consecutive rows. (One read
// of the union of all runs is ~40x slower on a chunked dataset in HDF5 1.10:
// its chunk mapping of a many-piece selection dominates.)
void read_runs(hid_t d, hid_t mem_type, const std::vector<int64_t>& rows, const std::vector<int64_t>& dims,
               size_t row_bytes, uint8_t* dst, const std::string& path, const char* name) {
    H5Id space(H5Dget_space(d));
    std::vector<hsize_t> start(dims.size(), 0), count(dims.begin(), dims.end());
    size_t i = 0;
    while (i < rows.size()) {
        size_t j = i + 1;
        while (j < rows.size() && rows[j] == rows[j - 1] + 1) ++j;
        start[0] = hsize_t(rows[i]);
        count[0] = hsize_t(j - i);
        H5Id mspace(H5Screate_simple(int(count.size()), count.data(), nullptr));
        CC_REQUIRE(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) >= 0 &&
                     H5Dread(d, mem_type, mspace.get(), space.get(), H5P_DEFAULT, dst + i * row_bytes) >= 0,
                 path, ": reading rows [", rows[i], ", ", rows[j - 1] + 1, ") of dataset '", name,
                 "' failed (truncated or corrupt file?)");
        i = j;
    }
}

// "862.0 TB" etc. for messages.
std::string bytes_str(long double b) {
    const char* units[] = {"bytes", "KB", "MB", "GB", "TB", "PB", "EB"};
    int u = 0;
    while (b >= 1000 && u < 6) {
        b /= 1000;
        ++u;
    }
    char buf[64];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0Lf %s" : "%.1Lf %s", b, units[u]);
    return buf;
}

}  // namespace

void check_stored_shape(hid_t d, const std::string& path, const std::string& name) {
    Lock lock(hdf5_mutex());
    H5Id space(H5Dget_space(d));
    const int nd = H5Sget_simple_extent_ndims(space.get());
    CC_REQUIRE(nd >= 0, path, ": cannot read the shape of dataset '", name, "' (corrupt file?)");
    std::vector<hsize_t> dims(static_cast<size_t>(nd));
    if (nd > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    std::string shape = "[";
    long double elements = 1;  // no overflow: a shape of 2^64 x 2^64 is still representable
    for (size_t i = 0; i < dims.size(); ++i) {
        shape += (i ? ", " : "") + std::to_string(dims[i]);
        elements *= (long double)dims[i];
    }
    shape += "]";
    H5Id type(H5Dget_type(d));
    const long double bytes = elements * (long double)H5Tget_size(type.get());
    if (bytes == 0) return;
    H5Id dcpl(H5Dget_create_plist(d));
    const H5D_layout_t layout = H5Pget_layout(dcpl.get());
    if (layout == H5D_COMPACT) return;  // the data lives in the object header (at most 64 KiB)
    if (layout == H5D_VIRTUAL) {
        // A joined dataset: its rows are mapped from the shard files (io/dataset_join.h).
        size_t maps = 0;
        CC_REQUIRE(H5Pget_virtual_count(dcpl.get(), &maps) >= 0, path, ": cannot read the mappings of virtual dataset '",
                   name, "' (corrupt file?)");
        long double mapped = 0;
        for (size_t i = 0; i < maps; ++i) {
            H5Id vs(H5Pget_virtual_vspace(dcpl.get(), i));
            const hssize_t n = vs.valid() ? H5Sget_select_npoints(vs.get()) : -1;
            if (n < 0) return;  // an unlimited mapping: its extent is not known here
            mapped += (long double)n;
        }
        CC_REQUIRE(mapped >= elements, path, ": virtual dataset '", name, "' has shape ", shape, " but its ", maps,
                   " shard mappings cover only ", (unsigned long long)mapped, " of its ",
                   (unsigned long long)std::min<long double>(elements, 1.8e19L),
                   " elements (the rest would read as zeros): a corrupt joined file, or a shape that claims more "
                   "rows than its shards hold");
        return;
    }
    std::error_code ec;
    const uintmax_t file_bytes = std::filesystem::file_size(path, ec);
    const int filters = layout == H5D_CHUNKED ? H5Pget_nfilters(dcpl.get()) : 0;
    if (filters == 0) {
        CC_REQUIRE(ec || bytes <= (long double)file_bytes, path, ": dataset '", name, "' has shape ", shape, " (",
                   bytes_str(bytes), ") but the whole file is ", bytes_str((long double)file_bytes),
                   ": a truncated or corrupt file, or a shape that claims more rows than were written");
        const long double stored = (long double)H5Dget_storage_size(d);
        CC_REQUIRE(stored >= bytes, path, ": dataset '", name, "' has shape ", shape, " (", bytes_str(bytes),
                   ") but only ", bytes_str(stored), " of it were ever written (HDF5 would read the rest as zeros): "
                   "a truncated or unfinished file, or a shape that claims more rows than were written");
        return;
    }
    // Compressed chunks: every chunk of the shape must exist.
    H5Id chunk_space(H5Dget_space(d));
    std::vector<hsize_t> chunk(dims.size());
    CC_REQUIRE(H5Pget_chunk(dcpl.get(), int(chunk.size()), chunk.data()) == int(chunk.size()), path,
               ": cannot read the chunking of dataset '", name, "' (corrupt file?)");
    long double want = 1;
    for (size_t i = 0; i < dims.size(); ++i) want *= std::ceil((long double)dims[i] / (long double)std::max<hsize_t>(chunk[i], 1));
    hsize_t have = 0;
    CC_REQUIRE(H5Dget_num_chunks(d, chunk_space.get(), &have) >= 0, path, ": cannot count the chunks of dataset '",
               name, "' (corrupt file?)");
    CC_REQUIRE((long double)have >= want, path, ": dataset '", name, "' has shape ", shape, " in ",
               (unsigned long long)std::min<long double>(want, 1.8e19L), " chunks but only ", (unsigned long long)have,
               " were ever written (HDF5 would read the rest as zeros): a truncated or unfinished file, or a shape "
               "that claims more rows than were written");
}

struct DatasetReader::Impl {
    H5File file;
    H5Id images, tokens, labels, corrupted, image_ids;
    explicit Impl(const std::string& p) : file(p, H5File::Mode::read) {}
};

std::vector<std::string> h5_read_strings(hid_t file, const std::string& path, const std::string& name,
                                         int64_t start, int64_t count) {
    Lock lock(hdf5_mutex());
    H5Id d(H5Dopen2(file, name.c_str(), H5P_DEFAULT));
    CC_REQUIRE(d.valid(), path, ": cannot open dataset '", name, "'");
    const DsInfo in = info(d.get());
    CC_REQUIRE(in.cls == H5T_STRING && in.dims.size() == 1, path, ": dataset '", name,
             "' should be a 1-D array of strings, found ", class_name(in.cls), " ", dims_str(in.dims));
    const int64_t n = in.dims[0];
    if (count < 0) count = n - start;
    CC_REQUIRE(start >= 0 && count >= 0 && start + count <= n, path, ": rows [", start, ", ", start + count,
             ") of '", name, "' out of range (", n, " rows)");
    std::vector<std::string> out(static_cast<size_t>(count));
    if (count == 0) return out;
    H5Id ftype(H5Dget_type(d.get()));
    H5Id space(H5Dget_space(d.get()));
    const hsize_t s0 = hsize_t(start), c0 = hsize_t(count);
    H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, &s0, nullptr, &c0, nullptr);
    H5Id mspace(H5Screate_simple(1, &c0, nullptr));
    H5Id mtype(H5Tcopy(H5T_C_S1));
    if (H5Tis_variable_str(ftype.get()) > 0) {
        H5Tset_size(mtype.get(), H5T_VARIABLE);
        H5Tset_cset(mtype.get(), H5Tget_cset(ftype.get()));
        std::vector<char*> ptrs(size_t(count), nullptr);
        CC_REQUIRE(H5Dread(d.get(), mtype.get(), mspace.get(), space.get(), H5P_DEFAULT, ptrs.data()) >= 0,
                 path, ": reading the strings of '", name, "' failed (truncated or corrupt file?)");
        for (size_t i = 0; i < ptrs.size(); ++i) out[i] = ptrs[i] ? ptrs[i] : "";
#if H5_VERSION_GE(1, 12, 0)
        H5Treclaim(mtype.get(), mspace.get(), H5P_DEFAULT, ptrs.data());
#else
        H5Dvlen_reclaim(mtype.get(), mspace.get(), H5P_DEFAULT, ptrs.data());
#endif
    } else {
        // Fixed length: one more byte per string so that a full-length null- or
        // space-padded string keeps its last character when HDF5 terminates it.
        const size_t len = H5Tget_size(ftype.get()) + 1;
        H5Tset_size(mtype.get(), len);
        H5Tset_strpad(mtype.get(), H5T_STR_NULLTERM);
        H5Tset_cset(mtype.get(), H5Tget_cset(ftype.get()));
        std::vector<char> buf(len * size_t(count));
        CC_REQUIRE(H5Dread(d.get(), mtype.get(), mspace.get(), space.get(), H5P_DEFAULT, buf.data()) >= 0,
                 path, ": reading the strings of '", name, "' failed (truncated or corrupt file?)");
        for (size_t i = 0; i < out.size(); ++i) {
            const char* p = buf.data() + i * len;
            out[i].assign(p, std::find(p, p + len, '\0'));
        }
    }
    return out;
}

DatasetReader::DatasetReader(const std::string& path, const DatasetExpect& ex) : path_(path) {
    Lock lock(hdf5_mutex());
    impl_ = new Impl(path);
    try {
        H5File& f = impl_->file;
        // -- attributes
        CC_REQUIRE(f.has_attr("/", "format_version"), path, ": no attribute 'format_version' on '/': not a "
                 "curaclip dataset (make one with `curaclip prep`)");
        const int64_t ver = f.attr_i64("/", "format_version");
        CC_REQUIRE(ver == kDatasetFormatVersion, path, ": attribute 'format_version' is ", ver,
                 ", this build reads format ", kDatasetFormatVersion);
        for (const char* a : {"image_size", "channels", "context_length", "tokenizer_id"})
            CC_REQUIRE(f.has_attr("/", a), path, ": attribute '", a, "' missing on '/'");
        image_size_ = int(f.attr_i64("/", "image_size"));
        channels_ = int(f.attr_i64("/", "channels"));
        context_ = int(f.attr_i64("/", "context_length"));
        tokenizer_id_ = f.attr_string("/", "tokenizer_id");
        if (f.has_attr("/", "source")) source_ = f.attr_string("/", "source");
        if (f.has_attr("/", "creation_command")) creation_command_ = f.attr_string("/", "creation_command");

        auto open = [&](const char* name) {
            CC_REQUIRE(f.exists(name), path, ": dataset '", name, "' missing");
            H5Id d(H5Dopen2(f.id(), name, H5P_DEFAULT));
            CC_REQUIRE(d.valid(), path, ": cannot open dataset '", name, "' (corrupt file?)");
            return d;
        };
        // -- /images u8 [N, S, S, C]
        {
            // Rows are read at random: with the chunk cache off, HDF5 reads only the
            // selected rows of an (uncompressed) chunk instead of the whole chunk.
            CC_REQUIRE(f.exists("/images"), path, ": dataset '/images' missing");
            H5Id dapl(H5Pcreate(H5P_DATASET_ACCESS));
            H5Pset_chunk_cache(dapl.get(), 0, 0, H5D_CHUNK_CACHE_W0_DEFAULT);
            impl_->images = H5Id(H5Dopen2(f.id(), "/images", dapl.get()));
            CC_REQUIRE(impl_->images.valid(), path, ": cannot open dataset '/images' (corrupt file?)");
        }
        const DsInfo im = info(impl_->images.get());
        CC_REQUIRE(im.cls == H5T_INTEGER && im.size == 1 && im.sign == H5T_SGN_NONE, path,
                 ": dataset '/images' should hold uint8, found ", class_name(im.cls), " of ", im.size, " bytes");
        CC_REQUIRE(im.dims.size() == 4, path, ": dataset '/images' should be [N, H, W, C], found shape ",
                 dims_str(im.dims));
        n_ = im.dims[0];
        CC_REQUIRE(n_ >= 0, path, ": dataset '/images' has an impossible shape ", dims_str(im.dims));
        check_stored_shape(impl_->images.get(), path, "/images");
        CC_REQUIRE(im.dims[1] == image_size_ && im.dims[2] == image_size_ && im.dims[3] == channels_, path,
                 ": dataset '/images' has shape ", dims_str(im.dims), " but the file's attributes say image_size ",
                 image_size_, ", channels ", channels_);
        // -- /tokens i32 [N, ctx]
        impl_->tokens = open("/tokens");
        const DsInfo tk = info(impl_->tokens.get());
        CC_REQUIRE(tk.cls == H5T_INTEGER && tk.size == 4 && tk.sign == H5T_SGN_2, path,
                 ": dataset '/tokens' should hold int32, found ", class_name(tk.cls), " of ", tk.size, " bytes");
        CC_REQUIRE(tk.dims.size() == 2 && tk.dims[0] == n_ && tk.dims[1] == context_, path,
                 ": dataset '/tokens' has shape ", dims_str(tk.dims), ", expected [", n_, ", ", context_,
                 "] (N of /images, attribute context_length)");
        check_stored_shape(impl_->tokens.get(), path, "/tokens");
        // -- /captions [N]
        {
            H5Id c = open("/captions");
            const DsInfo ci = info(c.get());
            CC_REQUIRE(ci.cls == H5T_STRING && ci.dims.size() == 1 && ci.dims[0] == n_, path,
                     ": dataset '/captions' should be ", n_, " strings, found ", class_name(ci.cls), " ",
                     dims_str(ci.dims));
        }
        // -- optional /labels, /corrupted, /classnames
        if (f.exists("/labels")) {
            impl_->labels = open("/labels");
            const DsInfo li = info(impl_->labels.get());
            CC_REQUIRE(li.cls == H5T_INTEGER && li.dims.size() == 1 && li.dims[0] == n_, path,
                     ": dataset '/labels' should be ", n_, " integers, found ", class_name(li.cls), " ",
                     dims_str(li.dims));
            check_stored_shape(impl_->labels.get(), path, "/labels");
            has_labels_ = true;
        }
        if (f.exists("/corrupted")) {
            impl_->corrupted = open("/corrupted");
            const DsInfo ki = info(impl_->corrupted.get());
            CC_REQUIRE(ki.cls == H5T_INTEGER && ki.dims.size() == 1 && ki.dims[0] == n_, path,
                     ": dataset '/corrupted' should be ", n_, " integers, found ", class_name(ki.cls), " ",
                     dims_str(ki.dims));
            check_stored_shape(impl_->corrupted.get(), path, "/corrupted");
            has_corrupted_ = true;
        }
        if (f.exists("/image_ids")) {
            impl_->image_ids = open("/image_ids");
            const DsInfo ii = info(impl_->image_ids.get());
            CC_REQUIRE(ii.cls == H5T_INTEGER && ii.dims.size() == 1 && ii.dims[0] == n_, path,
                     ": dataset '/image_ids' should be ", n_, " integers, found ", class_name(ii.cls), " ",
                     dims_str(ii.dims));
            check_stored_shape(impl_->image_ids.get(), path, "/image_ids");
            has_image_ids_ = true;
        }
        if (f.exists("/classnames")) classnames_ = h5_read_strings(f.id(), path, "/classnames");

        // -- shards of a joined dataset: HDF5 reads a missing source file as zeros
        if (f.exists("/shards/paths")) {
            const std::vector<std::string> shards = h5_read_strings(f.id(), path, "/shards/paths");
            const size_t slash = path.find_last_of('/');
            const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
            std::vector<std::string> missing;
            for (const auto& s : shards)
                if (!path_exists(s.empty() || s[0] == '/' ? s : dir + "/" + s)) missing.push_back(s);
            if (!missing.empty()) {
                std::string list;
                for (size_t i = 0; i < missing.size() && i < 5; ++i) list += (i ? ", " : "") + missing[i];
                if (missing.size() > 5) list += ", ... (" + std::to_string(missing.size()) + " in all)";
                CC_USER_FAIL(path, ": ", missing.size(), " of its ", shards.size(), " shard files are missing (", list,
                        "; paths are relative to ", dir, ")");
            }
        }
        // -- end of text
        if (f.has_attr("/", "eot_id")) eot_ = int32_t(f.attr_i64("/", "eot_id"));
        if (ex.eot_id >= 0) {
            CC_REQUIRE(eot_ < 0 || eot_ == ex.eot_id, path, ": attribute 'eot_id' is ", eot_, ", but the tokenizer's "
                     "end-of-text id is ", ex.eot_id);
            eot_ = ex.eot_id;
        }
        if (ex.vocab_size > 0) {
            CC_REQUIRE(eot_ < ex.vocab_size, path, ": the end-of-text id is ", eot_, " but the model's vocabulary has only ",
                       ex.vocab_size, " ids (model.vocab_size): the dataset was made with a larger tokenizer");
            vocab_ = ex.vocab_size;
        }

        // -- the consumer's expectations
        CC_REQUIRE(ex.image_size < 0 || ex.image_size == image_size_, path, ": dataset '/images' holds ",
                 image_size_, "x", image_size_, " images, expected ", ex.image_size, "x", ex.image_size,
                 " (the model's image size)");
        CC_REQUIRE(ex.channels < 0 || ex.channels == channels_, path, ": dataset '/images' has ", channels_,
                 " channels, expected ", ex.channels);
        CC_REQUIRE(ex.context_length < 0 || ex.context_length == context_, path,
                 ": dataset '/tokens' has context length ", context_, ", expected ", ex.context_length);
        CC_REQUIRE(ex.tokenizer_id.empty() || ex.tokenizer_id == tokenizer_id_, path,
                 ": dataset '/tokens' was made with tokenizer ", tokenizer_id_, ", expected tokenizer ",
                 ex.tokenizer_id, " (re-run prep with this tokenizer: --tokenizer FILE)");
    } catch (...) {
        delete impl_;
        impl_ = nullptr;
        throw;
    }
}

DatasetReader::~DatasetReader() {
    Lock lock(hdf5_mutex());
    delete impl_;
}

std::string DatasetReader::attribute(const std::string& name) const {
    Lock lock(hdf5_mutex());
    if (!impl_->file.has_attr("/", name)) return "";
    return impl_->file.attr_string("/", name);
}

void DatasetReader::read_rows(const int64_t* idx, size_t n, uint8_t* images, int32_t* tokens,
                              int32_t* labels, uint8_t* corrupted) const {
    if (n == 0) return;
    std::vector<int64_t> rows(idx, idx + n);
    for (int64_t r : rows)
        CC_REQUIRE(r >= 0 && r < n_, path_, ": row ", r, " out of range (", n_, " rows)");
    std::sort(rows.begin(), rows.end());
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
    // position of idx[k] among the sorted unique rows
    std::vector<size_t> where(n);
    for (size_t k = 0; k < n; ++k)
        where[k] = size_t(std::lower_bound(rows.begin(), rows.end(), idx[k]) - rows.begin());
    const bool identity = rows.size() == n && std::is_sorted(idx, idx + n);

    auto read = [&](const H5Id& d, const char* name, hid_t mem_type, size_t row_elems, size_t elem_bytes,
                    void* out) {
        Lock lock(hdf5_mutex());
        const DsInfo in = info(d.get());
        const size_t rb = row_elems * elem_bytes;
        std::vector<uint8_t> tmp;
        uint8_t* dst = static_cast<uint8_t*>(out);
        if (!identity) {
            tmp.resize(rows.size() * rb);
            dst = tmp.data();
        }
        read_runs(d.get(), mem_type, rows, in.dims, rb, dst, path_, name);
        if (!identity) {
            auto* o = static_cast<uint8_t*>(out);
            for (size_t k = 0; k < n; ++k) std::memcpy(o + k * rb, tmp.data() + where[k] * rb, rb);
        }
    };
    if (images) read(impl_->images, "/images", H5T_NATIVE_UINT8, image_bytes(), 1, images);
    if (tokens) {
        read(impl_->tokens, "/tokens", H5T_NATIVE_INT32, size_t(context_), 4, tokens);
        if (checks_tokens()) check_token_rows(idx, n, tokens);
    }
    if (labels) {
        if (has_labels_) read(impl_->labels, "/labels", H5T_NATIVE_INT32, 1, 4, labels);
        else std::fill(labels, labels + n, -1);
    }
    if (corrupted) {
        if (has_corrupted_) read(impl_->corrupted, "/corrupted", H5T_NATIVE_UINT8, 1, 1, corrupted);
        else std::fill(corrupted, corrupted + n, uint8_t(0));
    }
}

bool DatasetReader::token_row_ok(const int32_t* row) const {
    bool has_eot = eot_ < 0;
    const int64_t hi = eot_ >= 0 ? int64_t(eot_) + 1 : vocab_;  // ids in [0, hi)
    for (int t = 0; t < context_; ++t) {
        if (row[t] < 0 || (hi > 0 && row[t] >= hi)) return false;
        has_eot |= row[t] == eot_;
    }
    return has_eot;
}

std::string dataset_fingerprint(const DatasetReader& r) {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&](const void* p, size_t n) {
        const unsigned char* b = static_cast<const unsigned char*>(p);
        for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
    };
    const int64_t N = r.size();
    const int64_t shape[4] = {N, r.image_size(), r.channels(), r.context_length()};
    mix(shape, sizeof shape);
    mix(r.tokenizer_id().data(), r.tokenizer_id().size());
    std::vector<int64_t> rows;
    for (int64_t k = 0; k < std::min<int64_t>(N, 32); ++k) rows.push_back(k);
    for (int64_t k = std::max<int64_t>(0, N - 32); k < N; ++k) rows.push_back(k);
    for (int64_t k = 1; k <= 32 && N > 0; ++k) rows.push_back(k * (N - 1) / 33);
    std::sort(rows.begin(), rows.end());
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
    const size_t img = size_t(r.image_size()) * size_t(r.image_size()) * size_t(r.channels());
    std::vector<uint8_t> pixels(rows.size() * img);
    std::vector<int32_t> tokens(rows.size() * size_t(r.context_length()));
    if (!rows.empty())
        r.read_rows(rows.data(), rows.size(), img ? pixels.data() : nullptr,
                    r.context_length() > 0 ? tokens.data() : nullptr, nullptr, nullptr);
    mix(pixels.data(), pixels.size());
    mix(tokens.data(), tokens.size() * sizeof(int32_t));
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

void check_labels(const DatasetReader& reader) {
    if (!reader.has_labels() || reader.classnames().empty()) return;
    const int64_t N = reader.size(), K = int64_t(reader.classnames().size());
    std::vector<int32_t> labels(static_cast<size_t>(N));
    reader.read_range(0, N, nullptr, nullptr, labels.data(), nullptr);
    for (int64_t r = 0; r < N; ++r) {
        const int32_t y = labels[size_t(r)];
        CC_REQUIRE(y >= -1 && y < K, reader.path(), ": /labels[", r, "] = ", y, " is not a class of /classnames (",
                   K, " classes: 0..", K - 1, ", or -1 for an unlabelled row)");
    }
}

void DatasetReader::check_token_rows(const int64_t* idx, size_t n, const int32_t* tokens) const {
    for (size_t k = 0; k < n; ++k) {
        const int32_t* row = tokens + k * size_t(context_);
        if (token_row_ok(row)) continue;
        for (int t = 0; t < context_; ++t) {
            CC_REQUIRE(row[t] >= 0, path_, ": /tokens row ", idx[k], " holds id ", row[t], " at position ", t,
                       ": token ids cannot be negative (a corrupt or hand-made dataset; re-run `curaclip prep`)");
            CC_REQUIRE(vocab_ <= 0 || row[t] < vocab_, path_, ": /tokens row ", idx[k], " holds id ", row[t],
                       " at position ", t, ", outside the model's vocabulary [0, ", vocab_,
                       ") (model.vocab_size; a dataset made with another tokenizer?)");
            CC_REQUIRE(eot_ < 0 || row[t] <= eot_, path_, ": /tokens row ", idx[k], " holds id ", row[t],
                       " at position ", t, ", outside [0, ", eot_, "] (the end-of-text id is the largest)");
        }
        CC_USER_FAIL(path_, ": /tokens row ", idx[k], " has no end-of-text token (id ", eot_,
                     "): the text tower would pool at the wrong position. Every row must be sot, ids, eot, "
                     "zero padding (re-run `curaclip prep`)");
    }
}

int64_t DatasetReader::first_bad_token_row(int64_t begin, int64_t end) const {
    CC_REQUIRE(begin >= 0 && begin <= end && end <= n_, path_, ": rows [", begin, ", ", end, ") out of range (", n_,
               " rows)");
    if (!checks_tokens()) return -1;
    const int64_t chunk = std::max<int64_t>(1, (int64_t(1) << 22) / std::max(context_, 1));  // 16 MiB of ids
    std::vector<int32_t> tokens;
    std::vector<int64_t> rows;
    for (int64_t s = begin; s < end; s += chunk) {
        const int64_t c = std::min(chunk, end - s);
        tokens.resize(size_t(c) * size_t(context_));
        rows.resize(size_t(c));
        std::iota(rows.begin(), rows.end(), s);
        {
            Lock lock(hdf5_mutex());
            read_runs(impl_->tokens.get(), H5T_NATIVE_INT32, rows, {n_, int64_t(context_)}, size_t(context_) * 4,
                      reinterpret_cast<uint8_t*>(tokens.data()), path_, "/tokens");
        }
        for (int64_t k = 0; k < c; ++k)
            if (!token_row_ok(tokens.data() + k * context_)) return s + k;
    }
    return -1;
}

void DatasetReader::read_range(int64_t start, int64_t count, uint8_t* images, int32_t* tokens, int32_t* labels,
                               uint8_t* corrupted) const {
    CC_REQUIRE(start >= 0 && count >= 0 && start + count <= n_, path_, ": rows [", start, ", ", start + count,
             ") out of range (", n_, " rows)");
    std::vector<int64_t> idx(static_cast<size_t>(count));
    std::iota(idx.begin(), idx.end(), start);
    read_rows(idx.data(), idx.size(), images, tokens, labels, corrupted);
}

std::vector<int64_t> DatasetReader::read_image_ids(int64_t start, int64_t count) const {
    CC_REQUIRE(start >= 0 && count >= 0 && start + count <= n_, path_, ": rows [", start, ", ", start + count,
             ") out of range (", n_, " rows)");
    std::vector<int64_t> out(static_cast<size_t>(count));
    if (!has_image_ids_) {
        std::iota(out.begin(), out.end(), start);
        return out;
    }
    if (count == 0) return out;
    Lock lock(hdf5_mutex());
    const std::vector<int64_t> rows = [&] {
        std::vector<int64_t> r(static_cast<size_t>(count));
        std::iota(r.begin(), r.end(), start);
        return r;
    }();
    read_runs(impl_->image_ids.get(), H5T_NATIVE_INT64, rows, {n_}, sizeof(int64_t),
              reinterpret_cast<uint8_t*>(out.data()), path_, "/image_ids");
    return out;
}

std::vector<std::string> DatasetReader::read_captions(int64_t start, int64_t count) const {
    Lock lock(hdf5_mutex());
    return h5_read_strings(impl_->file.id(), path_, "/captions", start, count);
}

std::vector<std::string> DatasetReader::read_captions(const std::vector<int64_t>& idx) const {
    Lock lock(hdf5_mutex());
    std::vector<std::string> out;
    out.reserve(idx.size());
    for (int64_t i : idx) {
        CC_REQUIRE(i >= 0 && i < n_, path_, ": caption row ", i, " out of range (", n_, " rows)");
        out.push_back(h5_read_strings(impl_->file.id(), path_, "/captions", i, 1)[0]);
    }
    return out;
}

}  // namespace curaclip::io
