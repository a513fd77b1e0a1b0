// HDF5 files: RAII handles and checked reads/writes of whole datasets and
// attributes. Every failure names the file and the object (DESIGN §8, §11).
// The parallel (MPI-IO) dataset reader builds on this in io/.
//
// THREADS. The HDF5 library we link (Debian's hdf5-openmpi) is not built
// thread-safe, and the data loader reads from a prefetch thread. Every HDF5 call
// in the process must therefore hold io::hdf5_mutex() (recursive). H5File and
// H5Id take it in every member, so code that goes through them is safe; code that
// calls the H5* API directly must take it itself (std::lock_guard on
// io::hdf5_mutex()) around the calls *and* around the destruction of its H5Ids
// (H5Id::reset takes it, so that part is automatic).
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace curaclip {

namespace io {
// The one process-wide lock around the (not thread-safe) HDF5 library.
std::recursive_mutex& hdf5_mutex();
}  // namespace io

// Owns one HDF5 identifier and closes it with the matching H5?close.
class H5Id {
public:
    H5Id() = default;
    explicit H5Id(hid_t id) : id_(id) {}
    ~H5Id() { reset(); }
    H5Id(const H5Id&) = delete;
    H5Id& operator=(const H5Id&) = delete;
    H5Id(H5Id&& o) noexcept : id_(o.id_) { o.id_ = H5I_INVALID_HID; }
    H5Id& operator=(H5Id&& o) noexcept {
        if (this != &o) { reset(); id_ = o.id_; o.id_ = H5I_INVALID_HID; }
        return *this;
    }
    hid_t get() const { return id_; }
    bool valid() const { return id_ >= 0; }
    void reset();
    // Gives up ownership without closing (the caller closes it and checks the result,
    // e.g. an H5Fclose that fails because the disk is full).
    hid_t release() {
        const hid_t id = id_;
        id_ = H5I_INVALID_HID;
        return id;
    }

private:
    hid_t id_ = H5I_INVALID_HID;
};

class H5File {
public:
    enum class Mode { read, create_exclusive, read_write };
    // Opens (or, with create_exclusive, creates - never overwriting) a file.
    H5File(const std::string& path, Mode mode);
    const std::string& path() const { return path_; }
    hid_t id() const { return file_.get(); }

    bool exists(const std::string& object) const;
    std::vector<int64_t> shape(const std::string& dataset) const;

    // Whole-dataset reads converted to the requested type; `shape` gets the dims.
    std::vector<double> read_f64(const std::string& dataset, std::vector<int64_t>* shape = nullptr) const;
    std::vector<float> read_f32(const std::string& dataset, std::vector<int64_t>* shape = nullptr) const;
    std::vector<int32_t> read_i32(const std::string& dataset, std::vector<int64_t>* shape = nullptr) const;
    std::vector<uint8_t> read_u8(const std::string& dataset, std::vector<int64_t>* shape = nullptr) const;

    // Whole-dataset writes (intermediate groups are created).
    void write_f32(const std::string& dataset, const float* data, const std::vector<int64_t>& shape);
    void write_f64(const std::string& dataset, const double* data, const std::vector<int64_t>& shape);
    void write_i32(const std::string& dataset, const int32_t* data, const std::vector<int64_t>& shape);

    double attr_f64(const std::string& object, const std::string& name) const;
    int64_t attr_i64(const std::string& object, const std::string& name) const;
    std::string attr_string(const std::string& object, const std::string& name) const;
    bool has_attr(const std::string& object, const std::string& name) const;
    void set_attr(const std::string& object, const std::string& name, double value);
    void set_attr(const std::string& object, const std::string& name, int64_t value);
    void set_attr(const std::string& object, const std::string& name, const std::string& value);

    void flush();

private:
    template <typename T>
    std::vector<T> read_as(const std::string& dataset, hid_t mem_type, std::vector<int64_t>* shape) const;
    void write_as(const std::string& dataset, hid_t mem_type, hid_t file_type, const void* data,
                  const std::vector<int64_t>& shape);
    H5Id open_dataset(const std::string& dataset) const;

    std::string path_;
    H5Id file_;
};

// Turns HDF5's automatic error printing off (we report errors ourselves).
void h5_quiet();

}  // namespace curaclip
