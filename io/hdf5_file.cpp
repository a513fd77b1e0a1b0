#include "io/hdf5_file.h"

#include <atomic>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/check.h"
#include "io/durable_file.h"

namespace curaclip {

namespace io {
namespace {
std::atomic<bool> g_close_failed{false};
}
void note_hdf5_close_failure() { g_close_failed = true; }
bool hdf5_close_failed() { return g_close_failed; }

std::recursive_mutex& hdf5_mutex() {
    static std::recursive_mutex m;
    return m;
}
}  // namespace io

#define CC_H5_LOCK std::lock_guard<std::recursive_mutex> cc_h5_lock_(io::hdf5_mutex())

void h5_quiet() {
    CC_H5_LOCK;
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

void H5Id::reset() {
    if (id_ < 0) return;
    CC_H5_LOCK;
    switch (H5Iget_type(id_)) {
        case H5I_FILE:
            if (H5Fclose(id_) < 0) io::note_hdf5_close_failure();
            break;
        case H5I_GROUP: H5Gclose(id_); break;
        case H5I_DATASET: H5Dclose(id_); break;
        case H5I_DATASPACE: H5Sclose(id_); break;
        case H5I_DATATYPE: H5Tclose(id_); break;
        case H5I_ATTR: H5Aclose(id_); break;
        case H5I_GENPROP_LST: H5Pclose(id_); break;
        default: break;  // already closed (e.g. with its file, H5F_CLOSE_STRONG)
    }
    id_ = H5I_INVALID_HID;
}

// ---- what the error stack says ----------------------------------------------------------------

namespace {

struct H5Failure {
    int sys_errno = 0;  // "errno = N" in a file driver's message (sec2: open, read, write, lock, truncate)
    bool lock = false;  // a minor code H5E_CANTLOCKFILE on the stack
};

herr_t collect_failure(unsigned, const H5E_error2_t* e, void* data) {
    auto* f = static_cast<H5Failure*>(data);
    if (e->min_num == H5E_CANTLOCKFILE) f->lock = true;
    if (e->desc != nullptr && f->sys_errno == 0) {
        const char* p = std::strstr(e->desc, "errno = ");
        if (p != nullptr) f->sys_errno = std::atoi(p + 8);
    }
    return 0;
}

H5Failure last_failure() {
    H5Failure f;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_failure, &f);  // does not clear the stack
    return f;
}

// ", <reason>" for messages, or "" when HDF5 named no system error.
std::string reason_suffix() {
    const std::string r = h5_system_reason();
    return r.empty() ? std::string() : ": " + r;
}

[[noreturn]] void open_failed(const std::string& path, bool writing) {
    const H5Failure f = last_failure();
    if (f.lock && (f.sys_errno == EAGAIN || f.sys_errno == EWOULDBLOCK || f.sys_errno == 0))
        CC_USER_FAIL("cannot open HDF5 file ", path, ": it is locked, another process holds it open for writing",
                     writing ? " or reading" : "",
                     " (HDF5 file locking; e.g. an h5py.File(..., 'w' or 'a') still open in a notebook, or a "
                     "prep still writing it). Close it there first; if that process no longer writes to it, "
                     "HDF5_USE_FILE_LOCKING=FALSE in the environment turns the lock check off");
    if (f.lock)
        CC_USER_FAIL("cannot open HDF5 file ", path, ": taking its file lock failed: ", io::describe_errno(f.sys_errno),
                     " (a file system without file locks? set HDF5_USE_FILE_LOCKING=FALSE in the environment)");
    if (f.sys_errno != 0)
        CC_USER_FAIL("cannot ", writing ? "open or create" : "open", " HDF5 file ", path, ": ",
                     io::describe_errno(f.sys_errno));
    CC_USER_FAIL("cannot open HDF5 file ", path, " (truncated or corrupt?)");
}

}  // namespace

std::string h5_system_reason() {
    CC_H5_LOCK;
    const H5Failure f = last_failure();
    return f.sys_errno != 0 ? io::describe_errno(f.sys_errno) : std::string();
}

// ---- in-memory files ------------------------------------------------------------------------

// The core driver's buffer, allocated through these callbacks so that the file's
// bytes can be taken at close instead of copied (H5Fget_file_image would double the
// memory of a checkpoint). HDF5 zero-fills the memory it grows into.
namespace detail {
struct H5Image {
    void* data = nullptr;
    size_t size = 0;        // bytes allocated at `data`
    bool released = false;  // the driver closed the file and gave the buffer up
    ~H5Image() { std::free(data); }
};
}  // namespace detail

namespace {
using detail::H5Image;

void* image_malloc(size_t size, H5FD_file_image_op_t, void* udata) {
    auto* im = static_cast<H5Image*>(udata);
    void* p = std::malloc(size);
    if (p != nullptr) {
        std::free(im->data);
        im->data = p;
        im->size = size;
    }
    return p;
}
void* image_realloc(void* ptr, size_t size, H5FD_file_image_op_t, void* udata) {
    auto* im = static_cast<H5Image*>(udata);
    void* p = std::realloc(ptr, size);
    if (p != nullptr) {
        im->data = p;
        im->size = size;
    }
    return p;
}
herr_t image_free(void* ptr, H5FD_file_image_op_t, void* udata) {
    auto* im = static_cast<H5Image*>(udata);
    if (ptr == im->data)
        im->released = true;  // kept for write_image; ~H5Image frees it
    else
        std::free(ptr);
    return 0;
}
void* image_memcpy(void* dst, const void* src, size_t n, H5FD_file_image_op_t, void*) {
    return std::memcpy(dst, src, n);
}
void* udata_copy(void* udata) { return udata; }  // one H5Image for the property list and the file
herr_t udata_free(void*) { return 0; }

constexpr size_t kCoreIncrement = size_t(4) << 20;  // the in-memory file grows 4 MiB at a time
}  // namespace

// ---- H5File --------------------------------------------------------------------------------

H5File::~H5File() = default;
H5File::H5File(H5File&&) noexcept = default;
H5File& H5File::operator=(H5File&& o) noexcept {
    if (this != &o) {
        file_.reset();  // first: closing an in-memory file calls back into its image_
        path_ = std::move(o.path_);
        image_ = std::move(o.image_);
        file_ = std::move(o.file_);
    }
    return *this;
}

H5File::H5File(const std::string& path, Mode mode) : path_(path) {
    CC_H5_LOCK;
    h5_quiet();
    if (mode == Mode::in_memory) {
        image_ = std::make_unique<H5Image>();
        H5Id fapl(H5Pcreate(H5P_FILE_ACCESS));
        H5FD_file_image_callbacks_t cb = {image_malloc, image_memcpy, image_realloc, image_free,
                                          udata_copy,   udata_free,   image_.get()};
        // STRONG: closing the file closes whatever is still open in it, so that the
        // driver always releases the image at write_image.
        CC_CHECK(fapl.valid() && H5Pset_fapl_core(fapl.get(), kCoreIncrement, 0) >= 0 &&
                     H5Pset_file_image_callbacks(fapl.get(), &cb) >= 0 &&
                     H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG) >= 0,
                 path, ": cannot set up an in-memory HDF5 file");
        file_ = H5Id(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()));
        CC_CHECK(file_.valid(), path, ": cannot create an in-memory HDF5 file");
        return;
    }
    struct stat st {};
    const bool present = ::stat(path.c_str(), &st) == 0;
    if (mode == Mode::create_exclusive) {
        CC_REQUIRE(!present, "refusing to overwrite existing file ", path);
        file_ = H5Id(H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT));
        if (!file_.valid()) open_failed(path, true);
        return;
    }
    CC_REQUIRE(present, "file not found: ", path);
    CC_REQUIRE(!S_ISDIR(st.st_mode), path, " is a folder, not an HDF5 file",
               mode == Mode::read ? " (give the .h5 file inside it)" : "");
    const int readable = ::access(path.c_str(), mode == Mode::read ? R_OK : (R_OK | W_OK));
    CC_REQUIRE(readable == 0, "cannot open ", path, ": ", io::describe_errno(errno));
    CC_REQUIRE(H5Fis_hdf5(path.c_str()) > 0, path, " is not an HDF5 file (truncated or corrupt?)");
    file_ = H5Id(H5Fopen(path.c_str(), mode == Mode::read ? H5F_ACC_RDONLY : H5F_ACC_RDWR, H5P_DEFAULT));
    if (!file_.valid()) open_failed(path, mode != Mode::read);
}

void H5File::write_image(const std::string& target) {
    std::unique_ptr<H5Image> image;
    size_t bytes = 0;
    {
        CC_H5_LOCK;
        CC_CHECK(image_ != nullptr && file_.valid(), path_, ": write_image needs an open in-memory file");
        // The image is the file up to its end of allocation; closing can only shrink
        // that end (recorded in the superblock), so the bytes before it form the file.
        const bool flushed = H5Fflush(file_.get(), H5F_SCOPE_LOCAL) >= 0;
        const ssize_t n = flushed ? H5Fget_file_image(file_.get(), nullptr, 0) : -1;
        const herr_t closed = H5Fclose(file_.release());
        image = std::move(image_);
        CC_CHECK(flushed && n > 0 && closed >= 0 && image->released, path_,
                 ": closing the in-memory HDF5 file failed (out of memory?)");
        bytes = std::min(size_t(n), image->size);
    }
    // Outside the HDF5 lock: the loader's prefetch thread reads on while this writes.
    io::write_new_file(target, image->data, bytes);
}

bool H5File::exists(const std::string& object) const {
    CC_H5_LOCK;
    // Check every prefix: H5Lexists fails on a missing intermediate group.
    size_t pos = 0;
    while (true) {
        pos = object.find('/', pos + 1);
        const std::string prefix = object.substr(0, pos);
        if (!prefix.empty() && prefix != "/" && H5Lexists(file_.get(), prefix.c_str(), H5P_DEFAULT) <= 0)
            return false;
        if (pos == std::string::npos) return true;
    }
}

H5Id H5File::open_dataset(const std::string& dataset) const {
    CC_H5_LOCK;
    CC_REQUIRE(exists(dataset), path_, ": no dataset '", dataset, "'");
    H5Id d(H5Dopen2(file_.get(), dataset.c_str(), H5P_DEFAULT));
    CC_REQUIRE(d.valid(), path_, ": cannot open dataset '", dataset, "'");
    return d;
}

std::vector<int64_t> H5File::shape(const std::string& dataset) const {
    CC_H5_LOCK;
    H5Id d = open_dataset(dataset);
    H5Id space(H5Dget_space(d.get()));
    const int nd = H5Sget_simple_extent_ndims(space.get());
    CC_REQUIRE(nd >= 0, path_, ": cannot read the shape of '", dataset, "'");
    std::vector<hsize_t> dims(static_cast<size_t>(nd));
    H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    return std::vector<int64_t>(dims.begin(), dims.end());
}

namespace {
uint64_t physical_memory_bytes() {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : std::numeric_limits<uint64_t>::max();
}

std::string gib(double bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / double(uint64_t(1) << 30));
    return buf;
}

std::string shape_str(const std::vector<int64_t>& dims) {
    std::string s = "[";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
}
}  // namespace

template <typename T>
std::vector<T> H5File::read_as(const std::string& dataset, hid_t mem_type, std::vector<int64_t>* shape_out) const {
    CC_H5_LOCK;
    const std::vector<int64_t> dims = shape(dataset);
    // Refuse before allocating what cannot be read whole (a corrupt shape claiming
    // 2^40 rows would otherwise end in std::bad_alloc, naming no file).
    const uint64_t limit = physical_memory_bytes();
    uint64_t n = 1;
    bool fits = true;
    for (int64_t v : dims) {
        if (v != 0 && n > limit / uint64_t(v)) fits = false;
        n = fits ? n * uint64_t(v) : n;
    }
    fits = fits && n <= limit / sizeof(T);
    CC_REQUIRE(fits, path_, ": dataset '", dataset, "' has shape ", shape_str(dims),
               ", more bytes than this machine's memory (", gib(double(limit)),
               "): refusing to read it (a corrupt or wrong file?)");
    std::vector<T> out(static_cast<size_t>(n));
    H5Id d = open_dataset(dataset);
    if (n > 0)
        CC_REQUIRE(H5Dread(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) >= 0, path_,
                   ": reading dataset '", dataset, "' failed (corrupt data or incompatible type", reason_suffix(),
                   ")");
    if (shape_out) *shape_out = dims;
    return out;
}

std::vector<double> H5File::read_f64(const std::string& d, std::vector<int64_t>* s) const { return read_as<double>(d, H5T_NATIVE_DOUBLE, s); }
std::vector<float> H5File::read_f32(const std::string& d, std::vector<int64_t>* s) const { return read_as<float>(d, H5T_NATIVE_FLOAT, s); }
std::vector<int32_t> H5File::read_i32(const std::string& d, std::vector<int64_t>* s) const { return read_as<int32_t>(d, H5T_NATIVE_INT32, s); }
std::vector<uint8_t> H5File::read_u8(const std::string& d, std::vector<int64_t>* s) const { return read_as<uint8_t>(d, H5T_NATIVE_UINT8, s); }

void H5File::write_as(const std::string& dataset, hid_t mem_type, hid_t file_type, const void* data,
                      const std::vector<int64_t>& shape) {
    CC_H5_LOCK;
    std::vector<hsize_t> dims(shape.begin(), shape.end());
    // An empty shape is a scalar (as torch stores 0-d tensors such as logit_scale).
    H5Id space(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(int(dims.size()), dims.data(), nullptr));
    H5Id lcpl(H5Pcreate(H5P_LINK_CREATE));
    H5Pset_create_intermediate_group(lcpl.get(), 1);
    H5Id d(H5Dcreate2(file_.get(), dataset.c_str(), file_type, space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT));
    CC_REQUIRE(d.valid(), path_, ": cannot create dataset '", dataset, "' (exists already?)");
    CC_REQUIRE(H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0, path_,
               ": writing dataset '", dataset, "' failed", reason_suffix());
}

void H5File::write_f32(const std::string& d, const float* p, const std::vector<int64_t>& s) { write_as(d, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, p, s); }
void H5File::write_f64(const std::string& d, const double* p, const std::vector<int64_t>& s) { write_as(d, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, p, s); }
void H5File::write_i32(const std::string& d, const int32_t* p, const std::vector<int64_t>& s) { write_as(d, H5T_NATIVE_INT32, H5T_STD_I32LE, p, s); }

bool H5File::has_attr(const std::string& object, const std::string& name) const {
    CC_H5_LOCK;
    return exists(object) && H5Aexists_by_name(file_.get(), object.c_str(), name.c_str(), H5P_DEFAULT) > 0;
}

namespace {
// Opens attribute `name` of `object` and checks it holds exactly one value (a
// scalar, or a 1-element array as numpy writes `f.attrs['x'] = [v]`).
H5Id open_single_attr(hid_t file, const std::string& path, const std::string& object, const std::string& name) {
    H5Id a(H5Aopen_by_name(file, object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT));
    CC_REQUIRE(a.valid(), path, ": cannot open attribute '", name, "' of '", object, "'");
    H5Id space(H5Aget_space(a.get()));
    const hssize_t n = H5Sget_simple_extent_npoints(space.get());
    CC_REQUIRE(n == 1, path, ": attribute '", name, "' of '", object, "' should hold one value, holds ", n);
    return a;
}
}  // namespace

double H5File::attr_f64(const std::string& object, const std::string& name) const {
    CC_H5_LOCK;
    CC_REQUIRE(has_attr(object, name), path_, ": '", object, "' has no attribute '", name, "'");
    H5Id a = open_single_attr(file_.get(), path_, object, name);
    double v = 0;
    CC_REQUIRE(H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v) >= 0, path_, ": attribute '", name, "' is not a number");
    return v;
}

int64_t H5File::attr_i64(const std::string& object, const std::string& name) const {
    CC_H5_LOCK;
    CC_REQUIRE(has_attr(object, name), path_, ": '", object, "' has no attribute '", name, "'");
    H5Id a = open_single_attr(file_.get(), path_, object, name);
    H5Id type(H5Aget_type(a.get()));
    CC_REQUIRE(H5Tget_class(type.get()) == H5T_INTEGER, path_, ": attribute '", name, "' of '", object,
             "' should be an integer");
    int64_t v = 0;
    CC_REQUIRE(H5Aread(a.get(), H5T_NATIVE_INT64, &v) >= 0, path_, ": attribute '", name, "' is not an integer");
    return v;
}

// Strings as any tool writes them: variable or fixed length, ASCII or UTF-8 (h5py
// writes str as variable-length UTF-8, numpy bytes as fixed-length null-padded),
// null-terminated, null- or space-padded. HDF5 converts between paddings but not
// between character sets, so the memory type takes the file's character set.
std::string H5File::attr_string(const std::string& object, const std::string& name) const {
    CC_H5_LOCK;
    CC_REQUIRE(has_attr(object, name), path_, ": '", object, "' has no attribute '", name, "'");
    H5Id a = open_single_attr(file_.get(), path_, object, name);
    H5Id type(H5Aget_type(a.get()));
    CC_REQUIRE(H5Tget_class(type.get()) == H5T_STRING, path_, ": attribute '", name, "' of '", object,
             "' should be a string");
    H5Id mem(H5Tcopy(H5T_C_S1));
    H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
    if (H5Tis_variable_str(type.get()) > 0) {
        H5Tset_size(mem.get(), H5T_VARIABLE);
        char* s = nullptr;
        CC_REQUIRE(H5Aread(a.get(), mem.get(), &s) >= 0, path_, ": cannot read string attribute '", name, "'");
        std::string out = s ? s : "";
        H5free_memory(s);
        return out;
    }
    const size_t n = H5Tget_size(type.get());
    std::string out(n + 1, '\0');  // room for the terminator of a full-length null-padded string
    H5Tset_size(mem.get(), n + 1);
    H5Tset_strpad(mem.get(), H5T_STR_NULLTERM);
    CC_REQUIRE(H5Aread(a.get(), mem.get(), out.data()) >= 0, path_, ": cannot read string attribute '", name, "'");
    out.resize(out.find('\0'));
    return out;
}

namespace {
void write_attr(hid_t file, const std::string& path, const std::string& object, const std::string& name,
                hid_t type, const void* value) {
    CC_H5_LOCK;
    if (H5Aexists_by_name(file, object.c_str(), name.c_str(), H5P_DEFAULT) > 0)
        H5Adelete_by_name(file, object.c_str(), name.c_str(), H5P_DEFAULT);
    H5Id space(H5Screate(H5S_SCALAR));
    H5Id a(H5Acreate_by_name(file, object.c_str(), name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT));
    CC_REQUIRE(a.valid(), path, ": cannot create attribute '", name, "' on '", object, "'");
    CC_REQUIRE(H5Awrite(a.get(), type, value) >= 0, path, ": cannot write attribute '", name, "'");
}
}  // namespace

void H5File::set_attr(const std::string& o, const std::string& n, double v) { write_attr(file_.get(), path_, o, n, H5T_NATIVE_DOUBLE, &v); }
void H5File::set_attr(const std::string& o, const std::string& n, int64_t v) { write_attr(file_.get(), path_, o, n, H5T_NATIVE_INT64, &v); }
void H5File::set_attr(const std::string& o, const std::string& n, const std::string& v) {
    CC_H5_LOCK;
    H5Id type(H5Tcopy(H5T_C_S1));
    H5Tset_size(type.get(), H5T_VARIABLE);
    const char* s = v.c_str();
    write_attr(file_.get(), path_, o, n, type.get(), &s);
}

void H5File::close() {
    CC_H5_LOCK;
    if (!file_.valid()) return;
    if (H5Fclose(file_.release()) < 0) {
        io::note_hdf5_close_failure();
        const std::string why = h5_system_reason();
        CC_USER_FAIL(path_, ": closing the file failed", why.empty() ? " (disk full?)" : ": " + why);
    }
}

void H5File::flush() {
    CC_H5_LOCK;
    CC_REQUIRE(H5Fflush(file_.get(), H5F_SCOPE_GLOBAL) >= 0, path_, ": flushing to disk failed", reason_suffix());
}

}  // namespace curaclip
