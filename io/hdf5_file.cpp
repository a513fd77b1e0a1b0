#include "io/hdf5_file.h"

#include <sys/stat.h>

#include "core/check.h"

namespace curaclip {

namespace io {
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
        case H5I_FILE: H5Fclose(id_); break;
        case H5I_GROUP: H5Gclose(id_); break;
        case H5I_DATASET: H5Dclose(id_); break;
        case H5I_DATASPACE: H5Sclose(id_); break;
        case H5I_DATATYPE: H5Tclose(id_); break;
        case H5I_ATTR: H5Aclose(id_); break;
        case H5I_GENPROP_LST: H5Pclose(id_); break;
        default: break;
    }
    id_ = H5I_INVALID_HID;
}

H5File::H5File(const std::string& path, Mode mode) : path_(path) {
    CC_H5_LOCK;
    h5_quiet();
    struct stat st {};
    const bool present = ::stat(path.c_str(), &st) == 0;
    if (mode == Mode::create_exclusive) {
        CC_REQUIRE(!present, "refusing to overwrite existing file ", path);
        file_ = H5Id(H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT));
        CC_REQUIRE(file_.valid(), "cannot create HDF5 file ", path);
        return;
    }
    CC_REQUIRE(present, "file not found: ", path);
    CC_REQUIRE(H5Fis_hdf5(path.c_str()) > 0, path, " is not an HDF5 file (truncated or corrupt?)");
    file_ = H5Id(H5Fopen(path.c_str(), mode == Mode::read ? H5F_ACC_RDONLY : H5F_ACC_RDWR, H5P_DEFAULT));
    CC_REQUIRE(file_.valid(), "cannot open HDF5 file ", path, " (truncated or corrupt?)");
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

template <typename T>
std::vector<T> H5File::read_as(const std::string& dataset, hid_t mem_type, std::vector<int64_t>* shape_out) const {
    CC_H5_LOCK;
    const std::vector<int64_t> dims = shape(dataset);
    int64_t n = 1;
    for (int64_t v : dims) n *= v;
    std::vector<T> out(static_cast<size_t>(n));
    H5Id d = open_dataset(dataset);
    if (n > 0)
        CC_REQUIRE(H5Dread(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) >= 0, path_,
                 ": reading dataset '", dataset, "' failed (corrupt data or incompatible type)");
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
             ": writing dataset '", dataset, "' failed");
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

void H5File::flush() {
    CC_H5_LOCK;
    H5Fflush(file_.get(), H5F_SCOPE_GLOBAL);
}

}  // namespace curaclip
