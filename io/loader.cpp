#include "io/loader.h"

#include <limits>
#include <numeric>

#include "core/check.h"
#include "core/philox.h"
#include "core/sampling.h"

namespace curaclip::io {

std::vector<int64_t> Loader::epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle) {
    std::vector<int64_t> p(static_cast<size_t>(n));
    std::iota(p.begin(), p.end(), int64_t(0));
    if (!shuffle) return p;
    Philox rng(seed, RngPurpose::data_order, uint64_t(epoch), 0);
    fisher_yates_shuffle(rng, p);
    return p;
}

Loader::Loader(const std::string& path, int64_t global_batch, const Communicator& comm, uint64_t seed,
               const LoaderOptions& options)
    : global_batch_(global_batch), seed_(seed), options_(options) {
    reader_ = std::make_unique<DatasetReader>(path, options.expect);
    const int P = comm.size();
    CC_REQUIRE(global_batch > 0 && global_batch % P == 0, path, ": global batch ", global_batch,
               " must be a positive multiple of the number of ranks (", P, ")");
    if (!options_.rows.empty()) {
        std::vector<uint8_t> seen(size_t(reader_->size()), 0);
        for (const int64_t r : options_.rows) {
            CC_REQUIRE(r >= 0 && r < reader_->size(), path, ": loader row subset names row ", r, ", outside the ",
                       reader_->size(), " examples of the dataset");
            CC_REQUIRE(!seen[size_t(r)], path, ": loader row subset names row ", r, " twice");
            seen[size_t(r)] = 1;
        }
    }
    CC_REQUIRE(global_batch <= subset_size(), path, ": global batch ", global_batch, " is larger than the ",
               subset_size(), options_.rows.empty() ? " examples of the dataset" : " examples of the row subset");
    CC_CHECK(options.prefetch >= 0, "loader prefetch depth must be >= 0, got ", options.prefetch);
    check_token_rows(*reader_, comm);
    // Every rank must see the same file (same N) and batch, or the slices would not tile.
    int64_t rows_sum = 0;
    for (const int64_t r : options_.rows) rows_sum += r;
    int64_t v[4] = {reader_->size(), global_batch, subset_size(), rows_sum};
    int64_t lo[4] = {v[0], v[1], v[2], v[3]};
    comm.allreduce_max(v, 4);
    comm.allreduce_min(lo, 4);
    CC_REQUIRE(v[0] == lo[0] && v[1] == lo[1], path, ": ranks disagree on the dataset size (", lo[0], "..", v[0],
               ") or the global batch (", lo[1], "..", v[1], "): do all ranks see the same file?");
    CC_REQUIRE(v[2] == lo[2] && v[3] == lo[3], path, ": ranks disagree on the row subset (", lo[2], "..", v[2], " rows)");
    local_batch_ = global_batch / P;
    slice_offset_ = int64_t(comm.rank()) * local_batch_;
    steps_per_epoch_ = subset_size() / global_batch;
    if (options_.prefetch > 0) thread_ = std::thread([this] { run(); });
}

Loader::~Loader() {
    {
        std::lock_guard<std::mutex> lk(mutex_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

LoaderPosition Loader::advance(LoaderPosition p) const {
    if (++p.step == steps_per_epoch_) {
        p.step = 0;
        ++p.epoch;
    }
    return p;
}

std::vector<int64_t> Loader::epoch_rows(int64_t epoch) const {
    std::vector<int64_t> p = epoch_order(subset_size(), seed_, epoch, options_.shuffle);
    if (!options_.rows.empty())
        for (int64_t& i : p) i = options_.rows[size_t(i)];
    return p;
}

const std::vector<int64_t>& Loader::order(int64_t epoch) {
    if (order_epoch_ != epoch) {
        order_ = epoch_rows(epoch);
        order_epoch_ = epoch;
    }
    return order_;
}

std::vector<int64_t> Loader::global_indices(const LoaderPosition& pos) const {
    CC_CHECK(pos.epoch >= 0 && pos.step >= 0 && pos.step < steps_per_epoch_, reader_->path(),
             ": loader position (epoch ", pos.epoch, ", step ", pos.step, ") out of range (", steps_per_epoch_,
             " steps per epoch)");
    const std::vector<int64_t> p = epoch_rows(pos.epoch);
    return std::vector<int64_t>(p.begin() + pos.step * global_batch_, p.begin() + (pos.step + 1) * global_batch_);
}

Batch Loader::read_batch(const LoaderPosition& pos) {
    Batch b;
    b.epoch = pos.epoch;
    b.step = pos.step;
    b.offset = slice_offset_;
    b.size = local_batch_;
    b.image_size = reader_->image_size();
    b.channels = reader_->channels();
    b.context_length = reader_->context_length();
    {
        std::lock_guard<std::mutex> lk(order_mutex_);
        const std::vector<int64_t>& p = order(pos.epoch);
        const auto first = p.begin() + pos.step * global_batch_ + slice_offset_;
        b.indices.assign(first, first + local_batch_);
    }
    const size_t n = size_t(local_batch_);
    b.images.resize(n * reader_->image_bytes());
    b.tokens.resize(n * size_t(b.context_length));
    b.labels.resize(n);
    b.corrupted.resize(n);
    reader_->read_rows(b.indices.data(), n, b.images.data(), b.tokens.data(), b.labels.data(),
                       b.corrupted.data());
    return b;
}

void Loader::run() {
    std::unique_lock<std::mutex> lk(mutex_);
    while (true) {
        cv_.wait(lk, [&] { return stop_ || (!error_ && ready_.size() < size_t(options_.prefetch)); });
        if (stop_) return;
        const LoaderPosition pos = next_in_;
        const uint64_t gen = generation_;
        lk.unlock();
        Batch b;
        std::exception_ptr err;
        try {
            b = read_batch(pos);
        } catch (...) {
            err = std::current_exception();
        }
        lk.lock();
        if (gen != generation_) continue;  // a seek happened meanwhile: stale
        if (err) {
            error_ = err;
        } else {
            ready_.push_back(std::move(b));
            next_in_ = advance(pos);
        }
        cv_.notify_all();
    }
}

Batch Loader::next() {
    if (options_.prefetch == 0) {
        LoaderPosition pos;
        {
            std::lock_guard<std::mutex> lk(mutex_);
            pos = next_out_;
        }
        Batch b = read_batch(pos);
        std::lock_guard<std::mutex> lk(mutex_);
        next_out_ = next_in_ = advance(pos);
        return b;
    }
    std::unique_lock<std::mutex> lk(mutex_);
    cv_.wait(lk, [&] { return !ready_.empty() || error_; });
    if (ready_.empty() && error_) {
        std::exception_ptr e = error_;
        error_ = nullptr;  // a later next() (after seek) may retry
        std::rethrow_exception(e);
    }
    Batch b = std::move(ready_.front());
    ready_.pop_front();
    next_out_ = advance(next_out_);
    lk.unlock();
    cv_.notify_all();
    return b;
}

LoaderPosition Loader::position() const {
    std::lock_guard<std::mutex> lk(mutex_);
    return next_out_;
}

void Loader::seek(const LoaderPosition& pos) {
    CC_REQUIRE(pos.epoch >= 0 && pos.step >= 0 && pos.step < steps_per_epoch_, reader_->path(),
               ": cannot seek to (epoch ", pos.epoch, ", step ", pos.step, "): ", steps_per_epoch_,
               " steps per epoch of global batch ", global_batch_);
    {
        std::lock_guard<std::mutex> lk(mutex_);
        ++generation_;
        ready_.clear();
        error_ = nullptr;
        next_out_ = next_in_ = pos;
    }
    cv_.notify_all();
}

void check_token_rows(const DatasetReader& reader, const Communicator& comm) {
    if (!reader.checks_tokens()) return;
    const auto [begin, end] = SequentialReader::block_range(reader.size(), comm.rank(), comm.size());
    int64_t bad = reader.first_bad_token_row(begin, end);
    if (bad < 0) bad = std::numeric_limits<int64_t>::max();
    comm.allreduce_min(&bad, 1);
    if (bad == std::numeric_limits<int64_t>::max()) return;
    // Every rank reads the same row and throws the reader's Error naming it.
    std::vector<int32_t> tokens(size_t(reader.context_length()));
    reader.read_range(bad, 1, nullptr, tokens.data(), nullptr, nullptr);
    CC_FAIL(reader.path(), ": /tokens row ", bad, " was refused by one rank but reads fine on this one");
}

// ---- SequentialReader ------------------------------------------------------------

std::pair<int64_t, int64_t> SequentialReader::block_range(int64_t n, int rank, int size) {
    const int64_t base = n / size, extra = n % size;
    const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
    return {begin, begin + base + (rank < extra ? 1 : 0)};
}

SequentialReader::SequentialReader(const std::string& path, int64_t batch, const Communicator* comm,
                                   const DatasetExpect& expect)
    : reader_(path, expect), batch_(batch) {
    CC_REQUIRE(batch > 0, path, ": evaluation batch must be positive, got ", batch);
    const auto [b, e] = comm ? block_range(reader_.size(), comm->rank(), comm->size())
                             : std::pair<int64_t, int64_t>{0, reader_.size()};
    begin_ = cursor_ = b;
    end_ = e;
}

bool SequentialReader::next(Batch& out) {
    if (cursor_ >= end_) return false;
    const int64_t n = std::min(batch_, end_ - cursor_);
    out.epoch = 0;
    out.step = (cursor_ - begin_) / batch_;
    out.offset = cursor_;
    out.size = n;
    out.image_size = reader_.image_size();
    out.channels = reader_.channels();
    out.context_length = reader_.context_length();
    out.images.resize(size_t(n) * reader_.image_bytes());
    out.tokens.resize(size_t(n) * size_t(out.context_length));
    out.labels.resize(size_t(n));
    out.corrupted.resize(size_t(n));
    out.indices.resize(size_t(n));
    std::iota(out.indices.begin(), out.indices.end(), cursor_);
    reader_.read_range(cursor_, n, out.images.data(), out.tokens.data(), out.labels.data(), out.corrupted.data());
    cursor_ += n;
    return true;
}

}  // namespace curaclip::io
