// HDF5 files of the MoDE pipeline: reading embeddings by row ranges, and writing
// new side files (embeddings, cluster assignments) collectively, each rank its
// own rows. A side file is never the dataset itself and never overwrites
// anything: it is written to "<out>.tmp" and renamed when complete (fsynced),
// and an existing <out> is refused. A write that fails (disk full) removes the
// .tmp before its Error propagates.
//
// Reading: EmbeddingReader refuses, naming the file, the dataset and the row, a
// shape that claims more rows than the file stores (io::check_stored_shape) at
// open and a NaN or Inf embedding as it is read.
//
// The ranks write their rows in turns (rank 0 first, a barrier between turns),
// each opening the file with HDF5's default POSIX driver: no MPI-IO, no
// parallel HDF5, and no rank ever holds more than its own block (docs/data.md §The loader).
// Every direct H5* call holds io::hdf5_mutex().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/hdf5_file.h"
#include "mode/clustering.h"
#include "mpi/communicator.h"

namespace curaclip::mode {

// A 2-D float dataset [N, D] (e.g. /caption_emb) read by row ranges.
class EmbeddingReader {
public:
    EmbeddingReader(const std::string& path, const std::string& key);
    int64_t n() const { return n_; }
    int64_t dim() const { return dim_; }
    const std::string& path() const { return path_; }
    const H5File& file() const { return file_; }
    void read(int64_t start, int64_t count, float* out) const;
    // A source that reads through this reader (which must outlive it).
    EmbeddingSource source() const;

private:
    std::string path_, key_;
    H5File file_;
    int64_t n_ = 0, dim_ = 0;
};

// This rank's rows [begin, begin + count) of a dataset of n_total rows; cols == 0
// makes a 1-D dataset [n_total], otherwise [n_total, cols]. dtype f32 or i32.
struct RowBlock {
    std::string dataset;
    DType dtype = DType::f32;
    int64_t n_total = 0, cols = 0, begin = 0, count = 0;
    const void* data = nullptr;
};

// Every rank: error unless `out` is a new path in an existing directory.
void check_new_output(const std::string& out, const char* option);

// Collective. Rank 0 creates <out>.tmp, calls header(file) (whole datasets and
// attributes), creates the row datasets; then every rank writes its blocks in
// turn; rank 0 fsyncs and renames to out. rows must list the same datasets in
// the same order on every rank. On an Error the rank that raised it removes
// <out>.tmp.
void write_side_file(const Communicator& comm, const std::string& out,
                     const std::function<void(H5File&)>& header, const std::vector<RowBlock>& rows);

// The ClusterResult as a side file (/assign/fine, /assign/expert, /centers/...).
struct ClusterFileInfo {
    std::string source_dataset, embeddings, dataset_key, creation_command, init;
    std::string source_fingerprint;  // io::dataset_fingerprint of the source dataset ("" if unknown)
    std::string checkpoint;  // the model that made the embeddings (MoDE routing embeds in its space); "" if unknown
    std::string encoder, encoder_id;  // or the sentence encoder that did (folder, BertEncoder::id()); "" if none
    uint64_t seed = 0;
    int iters = 0;
    bool balanced = false;         // balanced fine clusters
    bool coarse_balanced = false;  // balanced coarse clusters
};
void save_cluster_result(const Communicator& comm, const std::string& out, const ClusterResult& r,
                         const ClusterFileInfo& info);

}  // namespace curaclip::mode
