#include "jest/sample_exchange.h"

#include <climits>
#include <cstring>

namespace curaclip {

namespace {

// One example packed: image bytes | tokens | label | corrupted | file row.
struct RecordLayout {
    size_t image = 0, tokens = 0;  // bytes
    size_t off_tokens = 0, off_label = 0, off_corrupt = 0, off_index = 0, size = 0;
    explicit RecordLayout(size_t image_bytes, size_t token_count)
        : image(image_bytes), tokens(token_count * sizeof(int32_t)) {
        off_tokens = image;
        off_label = off_tokens + tokens;
        off_corrupt = off_label + sizeof(int32_t);
        off_index = off_corrupt + 1;
        size = off_index + sizeof(int64_t);
    }
};

int as_int(int64_t v, const char* what) {
    CC_CHECK(v >= 0 && v <= INT_MAX, "sample exchange: ", what, " ", v, " exceeds the MPI count limit");
    return int(v);
}

}  // namespace

io::Batch exchange_selected(const io::Batch& local, const std::vector<int64_t>& selected,
                            int64_t super_batch, const Communicator& comm) {
    const int P = comm.size(), r = comm.rank();
    const int64_t B = super_batch, b = int64_t(selected.size());
    CC_CHECK(B >= P && B % P == 0, "sample exchange: super-batch ", B, " not divisible by ", P, " ranks");
    CC_CHECK(b % P == 0, "sample exchange: ", b, " selected examples not divisible by ", P, " ranks");
    const int64_t Bl = B / P, bl = b / P;
    CC_CHECK(local.size == Bl && local.offset == int64_t(r) * Bl, "sample exchange: rank ", r,
             " holds rows [", local.offset, ", ", local.offset + local.size, ") of the super-batch, expected [",
             int64_t(r) * Bl, ", ", int64_t(r + 1) * Bl, ")");
    const size_t n = size_t(Bl);
    CC_CHECK(local.images.size() % (n ? n : 1) == 0 && local.tokens.size() % (n ? n : 1) == 0 &&
                 local.labels.size() == n && local.corrupted.size() == n && local.indices.size() == n,
             "sample exchange: inconsistent batch fields for ", n, " examples");
    const RecordLayout lay(local.images.size() / n, local.tokens.size() / n);

    // Who sends what to whom: selected position q comes from rank sel[q]/Bl and goes to q/bl.
    std::vector<int> send_count(size_t(P), 0), recv_count(size_t(P), 0);
    std::vector<uint8_t> seen(size_t(B), 0);
    for (int64_t qpos = 0; qpos < b; ++qpos) {
        const int64_t g = selected[size_t(qpos)];
        CC_CHECK(g >= 0 && g < B, "sample exchange: selected position ", g, " outside [0, ", B, ")");
        CC_CHECK(!seen[size_t(g)], "sample exchange: position ", g, " selected twice");
        seen[size_t(g)] = 1;
        const int src = int(g / Bl), dst = int(qpos / bl);
        if (src == r) ++send_count[size_t(dst)];
        if (dst == r) ++recv_count[size_t(src)];
    }
    std::vector<int> send_disp(size_t(P), 0), recv_disp(size_t(P), 0);
    for (int p = 1; p < P; ++p) {
        send_disp[size_t(p)] = send_disp[size_t(p - 1)] + send_count[size_t(p - 1)];
        recv_disp[size_t(p)] = recv_disp[size_t(p - 1)] + recv_count[size_t(p - 1)];
    }
    const int64_t nsend = send_disp[size_t(P - 1)] + send_count[size_t(P - 1)];

    // Pack in selection order (so the receiver can place records by their order per source).
    std::vector<uint8_t> sendbuf(size_t(nsend) * lay.size), recvbuf(size_t(bl) * lay.size);
    std::vector<int> fill(send_disp);
    for (int64_t qpos = 0; qpos < b; ++qpos) {
        const int64_t g = selected[size_t(qpos)];
        if (g / Bl != r) continue;
        const size_t i = size_t(g - int64_t(r) * Bl);
        uint8_t* rec = sendbuf.data() + size_t(fill[size_t(qpos / bl)]++) * lay.size;
        if (lay.image) std::memcpy(rec, local.images.data() + i * lay.image, lay.image);
        if (lay.tokens) std::memcpy(rec + lay.off_tokens, local.tokens.data() + i * (lay.tokens / 4), lay.tokens);
        std::memcpy(rec + lay.off_label, &local.labels[i], sizeof(int32_t));
        rec[lay.off_corrupt] = local.corrupted[i];
        std::memcpy(rec + lay.off_index, &local.indices[i], sizeof(int64_t));
    }

    MPI_Datatype rec_type;
    CC_MPI_CHECK(MPI_Type_contiguous(as_int(int64_t(lay.size), "record size"), MPI_BYTE, &rec_type));
    CC_MPI_CHECK(MPI_Type_commit(&rec_type));
    const int rc = MPI_Alltoallv(sendbuf.data(), send_count.data(), send_disp.data(), rec_type, recvbuf.data(),
                                 recv_count.data(), recv_disp.data(), rec_type, comm.handle());
    MPI_Type_free(&rec_type);
    if (rc != MPI_SUCCESS) mpi_fail("MPI_Alltoallv", rc, __FILE__, __LINE__);

    io::Batch out;
    out.epoch = local.epoch;
    out.step = local.step;
    out.offset = int64_t(r) * bl;
    out.size = bl;
    out.image_size = local.image_size;
    out.channels = local.channels;
    out.context_length = local.context_length;
    out.images.resize(size_t(bl) * lay.image);
    out.tokens.resize(size_t(bl) * (lay.tokens / 4));
    out.labels.resize(size_t(bl));
    out.corrupted.resize(size_t(bl));
    out.indices.resize(size_t(bl));
    // Records from source p arrive in selection order: walk this rank's positions in order.
    std::vector<int> next(recv_disp);
    for (int64_t j = 0; j < bl; ++j) {
        const int64_t g = selected[size_t(int64_t(r) * bl + j)];
        const uint8_t* rec = recvbuf.data() + size_t(next[size_t(g / Bl)]++) * lay.size;
        const size_t o = size_t(j);
        if (lay.image) std::memcpy(out.images.data() + o * lay.image, rec, lay.image);
        if (lay.tokens) std::memcpy(out.tokens.data() + o * (lay.tokens / 4), rec + lay.off_tokens, lay.tokens);
        std::memcpy(&out.labels[o], rec + lay.off_label, sizeof(int32_t));
        out.corrupted[o] = rec[lay.off_corrupt];
        std::memcpy(&out.indices[o], rec + lay.off_index, sizeof(int64_t));
    }
    return out;
}

std::vector<float> allgather_rows(const float* local, int64_t rows, int64_t cols, const Communicator& comm,
                                  std::vector<int64_t>* counts) {
    const int P = comm.size();
    CC_CHECK(rows >= 0 && cols >= 1, "allgather_rows: bad shape [", rows, ", ", cols, "]");
    std::vector<int64_t> all_rows(static_cast<size_t>(P));
    comm.allgather(&rows, all_rows.data(), 1);
    std::vector<int64_t> all_cols(static_cast<size_t>(P));
    comm.allgather(&cols, all_cols.data(), 1);
    for (int p = 0; p < P; ++p)
        CC_CHECK(all_cols[size_t(p)] == cols, "allgather_rows: rank ", p, " has ", all_cols[size_t(p)],
                 " columns, this rank ", cols);
    MPI_Datatype row_type;
    CC_MPI_CHECK(MPI_Type_contiguous(as_int(cols, "row length"), MPI_FLOAT, &row_type));
    CC_MPI_CHECK(MPI_Type_commit(&row_type));
    std::vector<int> cnt(static_cast<size_t>(P)), disp(static_cast<size_t>(P));
    int64_t total = 0;
    for (int p = 0; p < P; ++p) {
        cnt[size_t(p)] = as_int(all_rows[size_t(p)], "row count");
        disp[size_t(p)] = as_int(total, "row offset");
        total += all_rows[size_t(p)];
    }
    std::vector<float> out(size_t(total * cols));
    const int rc = MPI_Allgatherv(local, as_int(rows, "row count"), row_type, out.data(), cnt.data(), disp.data(),
                                  row_type, comm.handle());
    MPI_Type_free(&row_type);
    if (rc != MPI_SUCCESS) mpi_fail("MPI_Allgatherv", rc, __FILE__, __LINE__);
    if (counts) *counts = all_rows;
    return out;
}

}  // namespace curaclip
