// MoDE side files (see side_file.h).
#include "mode/side_file.h"


#include <cmath>
#include <filesystem>
#include <mutex>

#include "core/check.h"
#include "io/dataset_reader.h"
#include "io/durable_file.h"

namespace fs = std::filesystem;

namespace curaclip::mode {

namespace {

hid_t mem_type(DType t) { return t == DType::i32 ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT; }
hid_t file_type(DType t) { return t == DType::i32 ? H5T_STD_I32LE : H5T_IEEE_F32LE; }

std::vector<hsize_t> dims_of(const RowBlock& b) {
    if (b.cols == 0) return {hsize_t(b.n_total)};
    return {hsize_t(b.n_total), hsize_t(b.cols)};
}

}  // namespace

// ---- reading -----------------------------------------------------------------------------------
EmbeddingReader::EmbeddingReader(const std::string& path, const std::string& key)
    : path_(path), key_(key), file_(path, H5File::Mode::read) {
    CC_REQUIRE(file_.exists(key), path, ": no dataset '", key,
               "' (expected float [N, D] embeddings: run `curaclip embed`, or name the dataset with --dataset-key)");
    const std::vector<int64_t> shape = file_.shape(key);
    CC_REQUIRE(shape.size() == 2 && shape[0] >= 1 && shape[1] >= 1, path, ": dataset '", key,
               "' has shape of rank ", shape.size(), ", expected [N, D] embeddings with N, D >= 1");
    n_ = shape[0];
    dim_ = shape[1];
    std::lock_guard<std::recursive_mutex> lock(io::hdf5_mutex());
    H5Id d(H5Dopen2(file_.id(), key.c_str(), H5P_DEFAULT));
    CC_REQUIRE(d.valid(), path, ": cannot open dataset '", key, "' (corrupt file?)");
    H5Id t(H5Dget_type(d.get()));
    CC_REQUIRE(H5Tget_class(t.get()) == H5T_FLOAT, path, ": dataset '", key,
               "' is not a float dataset (expected float32/float64 embeddings)");
    // N rows must be in the file before anyone allocates per row (a shape of 2^40 rows).
    io::check_stored_shape(d.get(), path, key);
}

void EmbeddingReader::read(int64_t start, int64_t count, float* out) const {
    CC_CHECK(start >= 0 && count >= 0 && start + count <= n_, path_, ": rows ", start, "+", count,
             " out of range of '", key_, "' [", n_, ", ", dim_, "]");
    if (count == 0) return;
    std::lock_guard<std::recursive_mutex> lock(io::hdf5_mutex());
    H5Id d(H5Dopen2(file_.id(), key_.c_str(), H5P_DEFAULT));
    CC_REQUIRE(d.valid(), path_, ": cannot open dataset '", key_, "' (corrupt file?)");
    H5Id space(H5Dget_space(d.get()));
    const hsize_t s0[2] = {hsize_t(start), 0}, c0[2] = {hsize_t(count), hsize_t(dim_)};
    H5Id mspace(H5Screate_simple(2, c0, nullptr));
    CC_REQUIRE(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, s0, nullptr, c0, nullptr) >= 0 &&
                   H5Dread(d.get(), H5T_NATIVE_FLOAT, mspace.get(), space.get(), H5P_DEFAULT, out) >= 0,
               path_, ": reading rows ", start, "+", count, " of '", key_, "' failed (truncated or corrupt file?)");
    // A NaN or Inf embedding would poison every center it touches.
    for (int64_t i = 0; i < count * dim_; ++i)
        CC_REQUIRE(std::isfinite(out[i]), path_, ": dataset '", key_, "' row ", start + i / dim_, " holds ", out[i],
                   " at component ", i % dim_, " (expected finite embeddings: was the embedding model's checkpoint "
                   "finite?)");
}

EmbeddingSource EmbeddingReader::source() const {
    EmbeddingSource s;
    s.n = n_;
    s.dim = dim_;
    s.read = [this](int64_t start, int64_t count, float* out) { read(start, count, out); };
    return s;
}

// ---- writing -----------------------------------------------------------------------------------
void check_new_output(const std::string& out, const char* option) {
    CC_REQUIRE(!out.empty(), option, " is empty (expected the path of a new HDF5 file)");
    std::error_code ec;
    CC_REQUIRE(!fs::exists(out, ec), option, " ", out,
               " exists already; refusing to overwrite it (remove it or choose another path)");
    const fs::path dir = fs::path(out).parent_path();
    CC_REQUIRE(dir.empty() || fs::is_directory(dir, ec), option, " ", out, ": the directory ", dir.string(),
               " does not exist");
}

void write_side_file(const Communicator& comm, const std::string& out,
                     const std::function<void(H5File&)>& header, const std::vector<RowBlock>& rows) {
    const std::string tmp = out + ".tmp";
    // A failure (disk full, a bad dataset) leaves no half-written <out>.tmp behind:
    // the rank that failed removes it before its Error ends the job.
    try {
        if (comm.rank() == 0) {
            std::error_code ec;
            fs::remove(tmp, ec);  // a leftover of a crashed run is garbage by construction
            H5File f(tmp, H5File::Mode::create_exclusive);
            if (header) header(f);
            std::lock_guard<std::recursive_mutex> lock(io::hdf5_mutex());
            for (const RowBlock& b : rows) {
                CC_CHECK(b.dtype == DType::f32 || b.dtype == DType::i32, "side file: dataset ", b.dataset,
                         " must be f32 or i32");
                const std::vector<hsize_t> dims = dims_of(b);
                H5Id space(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
                H5Id lcpl(H5Pcreate(H5P_LINK_CREATE));
                H5Pset_create_intermediate_group(lcpl.get(), 1);
                H5Id d(H5Dcreate2(f.id(), b.dataset.c_str(), file_type(b.dtype), space.get(), lcpl.get(),
                                  H5P_DEFAULT, H5P_DEFAULT));
                CC_REQUIRE(d.valid(), tmp, ": cannot create dataset '", b.dataset, "' (disk full?)");
            }
            f.close();  // checked: a file that did not close is never published
        }
        for (int r = 0; r < comm.size(); ++r) {
            comm.barrier();
            if (r != comm.rank()) continue;
            bool any = false;
            for (const RowBlock& b : rows) any = any || b.count > 0;
            if (!any) continue;
            H5File f(tmp, H5File::Mode::read_write);
            std::lock_guard<std::recursive_mutex> lock(io::hdf5_mutex());
            for (const RowBlock& b : rows) {
                if (b.count == 0) continue;
                CC_CHECK(b.begin >= 0 && b.begin + b.count <= b.n_total && b.data, "side file: rows ", b.begin, "+",
                         b.count, " of ", b.dataset, " [", b.n_total, "]");
                H5Id d(H5Dopen2(f.id(), b.dataset.c_str(), H5P_DEFAULT));
                CC_CHECK(d.valid(), tmp, ": cannot open dataset '", b.dataset, "'");
                H5Id space(H5Dget_space(d.get()));
                std::vector<hsize_t> start = {hsize_t(b.begin), 0}, count = dims_of(b);
                count[0] = hsize_t(b.count);
                start.resize(count.size());
                H5Id mspace(H5Screate_simple(int(count.size()), count.data(), nullptr));
                CC_REQUIRE(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) >= 0 &&
                               H5Dwrite(d.get(), mem_type(b.dtype), mspace.get(), space.get(), H5P_DEFAULT, b.data) >= 0,
                           tmp, ": writing rows ", b.begin, "+", b.count, " of '", b.dataset, "' failed (disk full?)");
            }
            f.flush();
            f.close();
        }
        comm.barrier();
        if (comm.rank() == 0) {
            std::error_code ec;
            CC_REQUIRE(!fs::exists(out, ec), out, " appeared while it was being written; refusing to overwrite it");
            io::replace_durably(tmp, out);
        }
        comm.barrier();
    } catch (...) {
        std::error_code ec;
        fs::remove(tmp, ec);
        throw;
    }
}

void save_cluster_result(const Communicator& comm, const std::string& out, const ClusterResult& r,
                         const ClusterFileInfo& info) {
    const int64_t count = r.end - r.begin;
    std::vector<RowBlock> rows = {
        {"/assign/fine", DType::i32, r.n, 0, r.begin, count, r.fine.data()},
        {"/assign/expert", DType::i32, r.n, 0, r.begin, count, r.expert.data()},
    };
    write_side_file(comm, out, [&](H5File& f) {
        f.write_f32("/centers/fine", r.fine_centers.data(), {r.m, r.dim});
        f.write_f32("/centers/coarse", r.coarse_centers.data(), {r.n_experts, r.dim});
        f.write_i32("/centers/fine_to_expert", r.fine_to_expert.data(), {r.m});
        std::vector<double> fs_(r.fine_sizes.begin(), r.fine_sizes.end()), es(r.expert_sizes.begin(), r.expert_sizes.end());
        f.write_f64("/sizes/fine", fs_.data(), {r.m});
        f.write_f64("/sizes/expert", es.data(), {r.n_experts});
        f.set_attr("/", "format_version", int64_t(1));
        f.set_attr("/", "kind", std::string("mode_clusters"));
        f.set_attr("/", "m", r.m);
        f.set_attr("/", "n", r.n_experts);
        f.set_attr("/", "n_examples", r.n);
        f.set_attr("/", "dim", r.dim);
        f.set_attr("/", "sample", r.sample);
        f.set_attr("/", "seed", int64_t(info.seed));
        f.set_attr("/", "iters", int64_t(info.iters));
        f.set_attr("/", "init", info.init);
        f.set_attr("/", "balanced", int64_t(info.balanced ? 1 : 0));
        f.set_attr("/", "coarse_balanced", int64_t(info.coarse_balanced ? 1 : 0));
        f.set_attr("/", "source_dataset", info.source_dataset);
        if (!info.source_fingerprint.empty()) f.set_attr("/", "source_fingerprint", info.source_fingerprint);
        f.set_attr("/", "embeddings", info.embeddings);
        f.set_attr("/", "dataset_key", info.dataset_key);
        if (!info.checkpoint.empty()) f.set_attr("/", "checkpoint", info.checkpoint);
        if (!info.encoder_id.empty()) {
            f.set_attr("/", "encoder", info.encoder);
            f.set_attr("/", "encoder_id", info.encoder_id);
        }
        f.set_attr("/", "creation_command", info.creation_command);
        f.set_attr("/", "fine_inertia", r.fine_inertia);
        f.set_attr("/", "assign_inertia", r.assign_inertia);
    }, rows);
}

}  // namespace curaclip::mode
