// The sharded, prefetching training-data loader, and a sequential reader for
// evaluation (docs/architecture.md §Data flow of one training step, docs/data.md §The loader).
//
// ORDER. Epoch e visits the N examples in the order perm_e = a Fisher-Yates
// shuffle driven by Philox(seed, RngPurpose::data_order, step = e): a function of
// (N, seed, e) only. Global batch s of epoch e is perm_e[s*B, (s+1)*B); the last
// partial batch is dropped (steps_per_epoch = N / B). Rank r of P takes the
// contiguous slice [r*B/P, (r+1)*B/P) of every global batch (B % P == 0), so the
// concatenation over ranks of their slices is the same global batch whatever P
// is, and a run resumed with seek(position()) sees exactly the batches the
// uninterrupted run would have seen (position = (epoch, step in epoch) of the
// next batch; it is all the state there is).
//
// I/O. Each rank opens the file itself and reads only its own rows: one HDF5
// read per dataset and batch, with a hyperslab selection that is the union of
// the (sorted) rows it needs, then permuted back into batch order.
//
// THREADS / MPI-IO DECISION. The reads run on a prefetch thread that keeps the
// next `prefetch` batches ready. That thread makes NO MPI calls: MPI stays at
// MPI_THREAD_FUNNELED (mpi/communicator.h) and the file is opened with HDF5's
// default POSIX (sec2) driver, not the MPI-IO driver. Reasons: MPI-IO reads from
// a second thread would need MPI_THREAD_MULTIPLE (slower progress paths in Open
// MPI, not always granted), and an MPI-IO file open/close is collective, which
// would tie the loader's lifetime and every failure path to all ranks at once.
// Each rank's rows are scattered random rows, so independent MPI-IO transfers
// would issue the same small reads as pread does. HDF5 itself is not thread-safe:
// every HDF5 call in the process holds io::hdf5_mutex() (io/hdf5_file.h; H5File,
// DatasetReader and the loader take it), so the prefetch thread and main-thread
// HDF5 work (checkpoints, metrics) never overlap inside the library.
// The only MPI calls the loader makes are in its constructor, on the calling
// thread: a check that all ranks see the same N and global batch, and the token
// check below.
//
// VALIDATION. Where the reader checks token rows (an end-of-text id or the model's
// vocabulary is known: io/dataset_reader.h), the constructor scans every row of
// the file once, each rank its block (check_token_rows), so an out-of-vocabulary,
// negative or unterminated row is an Error naming the file and row before the
// first step, not when (and only if) a batch happens to draw it.
//
// SUBSETS. With LoaderOptions::rows the same holds over the subset: epoch e
// visits rows[perm_e[i]] with perm_e the shuffle of [0, |rows|).
//
// Errors on the prefetch thread (a corrupt file) are rethrown by next().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "io/dataset_reader.h"
#include "io/batch.h"
#include "mpi/communicator.h"

namespace curaclip::io {

struct LoaderOptions {
    bool shuffle = true;    // false: epoch order 0, 1, ..., N-1 (tests, evaluation)
    int prefetch = 2;       // batches kept ready by the prefetch thread; 0: no thread
    DatasetExpect expect;   // checked against the file (image size, tokenizer id, ...)
    // The rows the loader may visit (e.g. a MoDE expert's share of the data);
    // empty: all N. Each epoch shuffles this subset (a permutation of positions
    // [0, rows.size()) by the same Philox stream, mapped through rows), so the
    // global batches are the same for any number of ranks. Rows must be
    // distinct and in [0, N).
    std::vector<int64_t> rows{};
};

struct LoaderPosition {
    int64_t epoch = 0;
    int64_t step = 0;  // global batch within the epoch, in [0, steps_per_epoch)
    bool operator==(const LoaderPosition&) const = default;
};

class Loader {
public:
    Loader(const std::string& path, int64_t global_batch, const Communicator& comm, uint64_t seed,
           const LoaderOptions& options = {});
    ~Loader();
    Loader(const Loader&) = delete;
    Loader& operator=(const Loader&) = delete;

    // This rank's slice of the next global batch (blocks until it is read).
    Batch next();
    // (epoch, step) of the batch next() returns next.
    LoaderPosition position() const;
    // Make next() return global batch `pos` (checkpoint resume). Drops prefetched batches.
    void seek(const LoaderPosition& pos);

    int64_t dataset_size() const { return reader_->size(); }
    // Rows visited per epoch: the subset's size, or N.
    int64_t subset_size() const { return options_.rows.empty() ? reader_->size() : int64_t(options_.rows.size()); }
    int64_t global_batch() const { return global_batch_; }
    int64_t local_batch() const { return local_batch_; }
    int64_t steps_per_epoch() const { return steps_per_epoch_; }
    const DatasetReader& reader() const { return *reader_; }

    // The visiting order of epoch `epoch` (a permutation of [0, n)).
    static std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle = true);
    // The visiting order of epoch `epoch` as file rows (through options.rows where set).
    std::vector<int64_t> epoch_rows(int64_t epoch) const;
    // The file rows of global batch pos (all B of them, every rank's).
    std::vector<int64_t> global_indices(const LoaderPosition& pos) const;

private:
    Batch read_batch(const LoaderPosition& pos);
    const std::vector<int64_t>& order(int64_t epoch);  // cached, prefetch thread or no-thread next()
    LoaderPosition advance(LoaderPosition p) const;
    void run();

    std::unique_ptr<DatasetReader> reader_;
    int64_t global_batch_ = 0, local_batch_ = 0, steps_per_epoch_ = 0, slice_offset_ = 0;
    uint64_t seed_ = 0;
    LoaderOptions options_;

    std::mutex order_mutex_;
    int64_t order_epoch_ = -1;
    std::vector<int64_t> order_;

    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Batch> ready_;
    LoaderPosition next_out_, next_in_;  // next to hand out / next to read
    uint64_t generation_ = 0;            // bumped by seek: reads in flight are discarded
    std::exception_ptr error_;
    bool stop_ = false;
    std::thread thread_;
};

// Collective over comm: every rank scans its block of the rows of `reader`
// (DatasetReader::first_bad_token_row). When any rank finds a bad row, every rank
// throws the same Error, naming the file and the first bad row of the whole file,
// so no rank is left waiting in a later collective. Nothing is read when the
// reader checks no tokens.
void check_token_rows(const DatasetReader& reader, const Communicator& comm);

// Reads a dataset in file order, in batches, for evaluation: every row, or with
// a communicator only this rank's contiguous block (rows [begin, end) of
// block_range). The last batch may be short. Main thread only; no MPI calls.
class SequentialReader {
public:
    SequentialReader(const std::string& path, int64_t batch, const Communicator* comm = nullptr,
                     const DatasetExpect& expect = {});
    // Rows of rank r of P: an even split, the first N % P ranks one row more.
    static std::pair<int64_t, int64_t> block_range(int64_t n, int rank, int size);

    // Fills `out` with the next batch; false when the block is exhausted.
    bool next(Batch& out);
    void reset() { cursor_ = begin_; }
    int64_t begin() const { return begin_; }
    int64_t end() const { return end_; }
    const DatasetReader& reader() const { return reader_; }

private:
    DatasetReader reader_;
    int64_t batch_ = 0, begin_ = 0, end_ = 0, cursor_ = 0;
};

}  // namespace curaclip::io
