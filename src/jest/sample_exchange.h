// Moving JEST's selected examples to the ranks that train on them (docs/architecture.md §Data flow of one training step, docs/jest.md §One JEST step).
//
// Before: rank r of P holds its loader slice of the super-batch, global positions
// [r*B/P, (r+1)*B/P) (io::Batch with offset r*B/P, size B/P).
// Selection: b global positions (jest::Sampler), the same list on every rank.
// After: rank r holds the selected positions selected[r*b/P .. (r+1)*b/P) in that
// order: images, tokens, labels, corrupted flags and file row indices travel
// together, in ONE MPI_Alltoallv of packed records (a contiguous MPI datatype of
// one example's bytes, so counts are examples and never overflow int for any
// realistic batch).
#pragma once

#include <cstdint>
#include <vector>

#include "io/batch.h"
#include "mpi/communicator.h"

namespace curaclip {

// Collective. super_batch = B (B % P == 0, local.size == B/P, local.offset == r*B/P);
// selected.size() % P == 0, entries distinct and in [0, B). Returns this rank's
// b/P examples (offset r*b/P, size b/P; epoch/step and shapes copied from local).
io::Batch exchange_selected(const io::Batch& local, const std::vector<int64_t>& selected,
                            int64_t super_batch, const Communicator& comm);

// All-gather of row-major float matrices whose row counts differ by rank
// (MPI_Allgatherv): returns the rows of rank 0, then rank 1, ...; counts (if not
// null) receives each rank's row count. cols must be equal on every rank.
std::vector<float> allgather_rows(const float* local, int64_t rows, int64_t cols,
                                  const Communicator& comm, std::vector<int64_t>* counts = nullptr);

}  // namespace curaclip
