#include "io/dataset_join.h"

#include <unistd.h>

#include "core/check.h"
#include "io/dataset_reader.h"
#include "io/dataset_writer.h"
#include "io/durable_file.h"
#include "io/hdf5_file.h"
#include "io/shard_writer.h"

namespace curaclip::io {
namespace {

using Lock = std::lock_guard<std::recursive_mutex>;

// Why the HDF5 call that just failed failed (read before any other HDF5 call): the
// system's reason where HDF5 names one ("No space left on device (disk full)").
std::string h5_why() {
    const std::string r = h5_system_reason();
    return r.empty() ? " (disk full, or the file system refused the write?)" : ": " + r;
}


struct ShardInfo {
    int64_t rows = 0;
    int64_t image_size = 0, channels = 0, context = 0;
    std::string tokenizer_id;
    bool labels = false, image_ids = false;
};

ShardInfo inspect(const std::string& full_path) {
    H5File f(full_path, H5File::Mode::read);
    ShardInfo s;
    for (const char* a : {"image_size", "channels", "context_length", "tokenizer_id"})
        CC_REQUIRE(f.has_attr("/", a), full_path, ": attribute '", a, "' missing: not a finished prep shard");
    s.image_size = f.attr_i64("/", "image_size");
    s.channels = f.attr_i64("/", "channels");
    s.context = f.attr_i64("/", "context_length");
    s.tokenizer_id = f.attr_string("/", "tokenizer_id");
    const std::vector<int64_t> im = f.shape("/images");
    CC_REQUIRE(im.size() == 4 && im[1] == s.image_size && im[2] == s.image_size && im[3] == s.channels, full_path,
             ": /images does not match the shard's attributes");
    s.rows = im[0];
    s.labels = f.exists("/labels");
    s.image_ids = f.exists("/image_ids");
    return s;
}

H5Id vlen_utf8() {
    H5Id t(H5Tcopy(H5T_C_S1));
    H5Tset_size(t.get(), H5T_VARIABLE);
    H5Tset_cset(t.get(), H5T_CSET_UTF8);
    return t;
}

void write_string_list(hid_t file, const std::string& path, const char* name, const std::vector<std::string>& v) {
    H5Id t = vlen_utf8();
    const hsize_t n = v.size();
    H5Id space(H5Screate_simple(1, &n, nullptr));
    H5Id lcpl(H5Pcreate(H5P_LINK_CREATE));
    H5Pset_create_intermediate_group(lcpl.get(), 1);
    H5Id dcpl = reproducible_dcpl();
    H5Id d(H5Dcreate2(file, name, t.get(), space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT));
    CC_REQUIRE(d.valid(), path, ": cannot create dataset '", name, "'");
    std::vector<const char*> ptrs(v.size());
    for (size_t i = 0; i < v.size(); ++i) ptrs[i] = v[i].c_str();
    if (!v.empty())
        CC_REQUIRE(H5Dwrite(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) >= 0, path,
                 ": writing '", name, "' failed", h5_why());
}

// The virtual dataset `name` [total, row_dims...] of `type` over the shards.
void write_virtual(hid_t file, const std::string& path, const char* name, hid_t type,
                   const std::vector<hsize_t>& row_dims, const std::vector<JoinShard>& shards,
                   const std::vector<ShardInfo>& info, int64_t total) {
    std::vector<hsize_t> dims = {hsize_t(total)};
    dims.insert(dims.end(), row_dims.begin(), row_dims.end());
    const int nd = int(dims.size());
    H5Id vspace(H5Screate_simple(nd, dims.data(), nullptr));
    H5Id dcpl = reproducible_dcpl();
    int64_t offset = 0;
    for (size_t i = 0; i < shards.size(); ++i) {
        const int64_t n = info[i].rows;
        if (n == 0) continue;
        std::vector<hsize_t> start(size_t(nd), 0), count = dims;
        start[0] = hsize_t(offset);
        count[0] = hsize_t(n);
        H5Id src(H5Screate_simple(nd, count.data(), nullptr));
        CC_REQUIRE(H5Sselect_hyperslab(vspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) >=
                         0 &&
                     H5Pset_virtual(dcpl.get(), vspace.get(), shards[i].path.c_str(), name, src.get()) >= 0,
                 path, ": cannot map shard ", shards[i].path, " into virtual dataset '", name, "'");
        offset += n;
    }
    H5Sselect_none(vspace.get());
    H5Id d(H5Dcreate2(file, name, type, vspace.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
    CC_REQUIRE(d.valid(), path, ": cannot create virtual dataset '", name, "'");
}

}  // namespace

int64_t join_shards(const std::string& path, const std::vector<JoinShard>& shards, const JoinAttributes& attrs) {
    CC_REQUIRE(!shards.empty(), path, ": no shards to join");
    CC_REQUIRE(!path_exists(path), "refusing to overwrite existing file ", path);
    const std::string tmp = path + ".tmp";
    CC_REQUIRE(!path_exists(tmp), "temporary file ", tmp, " exists (another prep writing it?)");
    const std::string dir = parent_dir(path);

    Lock lock(hdf5_mutex());
    h5_quiet();
    std::vector<ShardInfo> info;
    int64_t total = 0;
    for (const JoinShard& s : shards) {
        info.push_back(inspect(dir + "/" + s.path));
        const ShardInfo& a = info.front();
        const ShardInfo& b = info.back();
        CC_REQUIRE(b.image_size == a.image_size && b.channels == a.channels && b.context == a.context &&
                     b.tokenizer_id == a.tokenizer_id && b.labels == a.labels && b.image_ids == a.image_ids,
                 "shard ", s.path, " does not match shard ", shards.front().path,
                 " (image size, channels, context, tokenizer or optional datasets differ)");
        total += b.rows;
    }
    CC_REQUIRE(total > 0, path, ": the shards hold no samples (every sample was rejected)");
    const ShardInfo& shape = info.front();

    try {
        H5Id fcpl = reproducible_fcpl();
        // Default format bounds: HDF5 writes the virtual layouts in the 1.10 format and
        // everything else in the oldest that can hold it. (Asking for 1.10 objects
        // throughout would give the root group version-2 headers, which carry
        // timestamps even with time tracking off: no two runs would be the same bytes.)
        H5Id file(H5Fcreate(tmp.c_str(), H5F_ACC_EXCL, fcpl.get(), H5P_DEFAULT));
        CC_REQUIRE(file.valid(), "cannot create ", tmp, "", h5_why());
        const hid_t f = file.get();
        const hsize_t S = hsize_t(shape.image_size), C = hsize_t(shape.channels), T = hsize_t(shape.context);
        H5Id str = vlen_utf8();
        write_virtual(f, tmp, "/images", H5T_STD_U8LE, {S, S, C}, shards, info, total);
        write_virtual(f, tmp, "/tokens", H5T_STD_I32LE, {T}, shards, info, total);
        write_virtual(f, tmp, "/captions", str.get(), {}, shards, info, total);
        write_virtual(f, tmp, "/keys", str.get(), {}, shards, info, total);
        if (shape.labels) write_virtual(f, tmp, "/labels", H5T_STD_I32LE, {}, shards, info, total);
        if (shape.image_ids) write_virtual(f, tmp, "/image_ids", H5T_STD_I64LE, {}, shards, info, total);
        if (!attrs.classnames.empty()) write_string_list(f, tmp, "/classnames", attrs.classnames);
        std::vector<std::string> paths, inputs;
        std::vector<int64_t> rows;
        for (size_t i = 0; i < shards.size(); ++i) {
            paths.push_back(shards[i].path);
            inputs.push_back(shards[i].input);
            rows.push_back(info[i].rows);
        }
        write_string_list(f, tmp, "/shards/paths", paths);
        write_string_list(f, tmp, "/shards/inputs", inputs);
        {
            const hsize_t n = rows.size();
            H5Id space(H5Screate_simple(1, &n, nullptr));
            H5Id dcpl = reproducible_dcpl();
            H5Id d(H5Dcreate2(f, "/shards/rows", H5T_STD_I64LE, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
            CC_REQUIRE(d.valid() && H5Dwrite(d.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data()) >= 0,
                     tmp, ": writing '/shards/rows' failed", h5_why());
        }
        auto attr = [&](const std::string& name, hid_t type, const void* value) {
            H5Id space(H5Screate(H5S_SCALAR));
            H5Id a(H5Acreate2(f, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT));
            CC_REQUIRE(a.valid() && H5Awrite(a.get(), type, value) >= 0, tmp, ": cannot write attribute '", name, "'");
        };
        attr("format_version", H5T_NATIVE_INT64, &kDatasetFormatVersion);
        const int64_t is = shape.image_size, ch = shape.channels, ctx = shape.context, ns = int64_t(shards.size());
        attr("image_size", H5T_NATIVE_INT64, &is);
        attr("channels", H5T_NATIVE_INT64, &ch);
        attr("context_length", H5T_NATIVE_INT64, &ctx);
        attr("shards", H5T_NATIVE_INT64, &ns);
        const char* tid = shape.tokenizer_id.c_str();
        attr("tokenizer_id", str.get(), &tid);
        for (const auto& [k, v] : attrs.integers) attr(k, H5T_NATIVE_INT64, &v);
        for (const auto& [k, v] : attrs.strings) {
            if (k == "tokenizer_id") continue;
            const char* s = v.c_str();
            attr(k, str.get(), &s);
        }
        CC_REQUIRE(H5Fflush(f, H5F_SCOPE_GLOBAL) >= 0, tmp, ": flushing failed", h5_why());
        if (H5Fclose(file.release()) < 0) {
            note_hdf5_close_failure();
            CC_USER_FAIL(tmp, ": closing failed", h5_why());
        }
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
    publish_new_file(tmp, path);
    return total;
}

}  // namespace curaclip::io
