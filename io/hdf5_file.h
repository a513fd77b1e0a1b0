// HDF5 files: RAII handles and checked reads/writes of whole datasets and
// attributes. Every failure names the file and the object (docs/data.md §Dataset files, docs/architecture.md §Reliability).
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
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace curaclip {

namespace io {
// The one process-wide lock around the (not thread-safe) HDF5 library.
std::recursive_mutex& hdf5_mutex();

// An H5Fclose that fails (its last flush hit a full disk) leaves HDF5 1.10 holding a
// half-freed file, and the library's own shutdown (inside MPI_Finalize, or at exit)
// then crashes on it. Every failed file close is noted here; main() reports the error
// and ends such a process with _exit, skipping that shutdown.
void note_hdf5_close_failure();
bool hdf5_close_failed();
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

namespace detail {
struct H5Image;  // the memory of an in-memory file (hdf5_file.cpp)
}

// ERRORS. A failed open says why, from HDF5's error stack and the system's errno:
//  * the file is locked by another process (HDF5 >= 1.10 takes flock(2) on every
//    open: shared for reading, exclusive for writing, so a reader fails while an
//    h5py.File(..., "w"/"a") elsewhere holds it): the message names the file, says
//    another process holds it open for writing, and names HDF5_USE_FILE_LOCKING=FALSE
//    (read once, when the library starts; safe only once that process writes no more);
//  * a file system without locks (ENOSYS, ENOLCK): the same variable;
//  * permission denied and other system errors: strerror;
//  * anything else: "truncated or corrupt?".
// Whole-dataset reads refuse, before allocating, a dataset whose shape claims more
// bytes than the machine's physical memory (a corrupt shape, e.g. 2^40 rows), naming
// the file, the dataset and the shape.
class H5File {
public:
    // read, read_write: an existing file. create_exclusive: a new file on disk (never
    // overwriting), written through as it is built.
    // in_memory: a new file built in memory only (HDF5's core driver, no backing
    // store); nothing touches the disk until write_image(). Writers that must
    // survive a full disk use it: with a file on disk, HDF5 1.10 writes metadata at
    // H5Fclose, and an H5Fclose that fails (ENOSPC) leaves a dangling identifier that
    // crashes the library's shutdown (at exit or MPI_Finalize). An in-memory file
    // cannot fail to close, and its bytes are written with checked system calls.
    // `path` names the file in messages (and is where create/open happen on disk).
    enum class Mode { read, create_exclusive, read_write, in_memory };
    H5File(const std::string& path, Mode mode);
    ~H5File();
    H5File(H5File&&) noexcept;
    H5File& operator=(H5File&&) noexcept;
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

    // H5Fflush, checked (a full disk is an Error naming the file and the reason).
    void flush();
    // Closes the file now and checks it (a failed close is an Error naming the file
    // and the system's reason, and is noted: io::hdf5_close_failed). Writers call it
    // before publishing the file: a destructor cannot report a failed close.
    void close();

    // in_memory only: closes the file (every object still open in it too) and writes
    // its bytes to the NEW file `target` with io::write_new_file (fsynced; removed
    // again on any error, which names `target` and the system's reason). The H5File
    // is closed afterwards, whether or not the write succeeded.
    void write_image(const std::string& target);

private:
    template <typename T>
    std::vector<T> read_as(const std::string& dataset, hid_t mem_type, std::vector<int64_t>* shape) const;
    void write_as(const std::string& dataset, hid_t mem_type, hid_t file_type, const void* data,
                  const std::vector<int64_t>& shape);
    H5Id open_dataset(const std::string& dataset) const;

    std::string path_;
    std::unique_ptr<detail::H5Image> image_;  // in_memory; declared before file_, which closes first
    H5Id file_;
};

// Why the HDF5 call that just failed failed, from the library's error stack (read
// before any other HDF5 call): the errno its file driver reported (0 if none) as
// "Permission denied", "No space left on device (disk full)", ...; empty if HDF5
// named no system error.
std::string h5_system_reason();

// Turns HDF5's automatic error printing off (we report errors ourselves).
void h5_quiet();

}  // namespace curaclip
