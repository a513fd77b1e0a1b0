#include "jest/learnability.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "backend/curation_ops.h"
#include "core/host_math.h"

namespace curaclip::jest {

namespace {
CC_VECTOR_CLONES
uint32_t max_abs_bits_serial(const float* p, int64_t n) {
    uint32_t mx = 0;
    for (int64_t i = 0; i < n; ++i) mx = std::max(mx, std::bit_cast<uint32_t>(p[i]) & 0x7fffffffu);
    return mx;
}
}  // namespace

uint32_t max_abs_bits(const float* p, int64_t n) {
    uint32_t mx = 0;
    host::parallel_chunks(n, int64_t(1) << 16,
                         [&](int64_t b, int64_t e) {
                             const uint32_t m = max_abs_bits_serial(p + b, e - b);
#pragma omp critical(curaclip_jest_max_abs)
                             mx = std::max(mx, m);
                         });
    return mx;
}

namespace {
// XT[j * ld + i0 + i] = X[i * B + j] for the tile X [rows, B] (in cache), through 16 x 16
// blocks on the stack: each source and destination line is touched once per block (the
// destination rows lie ld floats apart, which would alias in L1 if written one float at a
// time).
void transpose_tile(const float* X, int64_t rows, int64_t B, float* XT, int64_t ld, int64_t i0) {
    host::parallel_chunks(B, (int64_t(1) << 16) / std::max<int64_t>(rows, 1), [&](int64_t j0, int64_t j1) {
        float buf[16][16];
        for (int64_t jb = j0; jb < j1; jb += 16) {
            const int64_t nj = std::min<int64_t>(16, j1 - jb);
            for (int64_t ib = 0; ib < rows; ib += 16) {
                const int64_t ni = std::min<int64_t>(16, rows - ib);
                for (int64_t i = 0; i < ni; ++i)
                    for (int64_t j = 0; j < nj; ++j) buf[j][i] = X[(ib + i) * B + jb + j];
                for (int64_t j = 0; j < nj; ++j) {
                    float* dst = XT + (jb + j) * ld + i0 + ib;
                    for (int64_t i = 0; i < ni; ++i) dst[i] = buf[j][i];
                }
            }
        }
    });
}
}  // namespace

LearnabilityMatrix::LearnabilityMatrix(Backend& backend, Collectives& coll, LossKind loss,
                                       ScoreKind kind, int64_t local_batch, int64_t embed_dim,
                                       int64_t tile_rows)
    : be_(backend), coll_(coll), loss_(loss), kind_(kind), Bl_(local_batch), D_(embed_dim) {
    CC_CHECK(local_batch >= 1, "JEST scoring: local batch must be >= 1, got ", local_batch);
    CC_CHECK(embed_dim >= 1, "JEST scoring: embedding dim must be >= 1, got ", embed_dim);
    B_ = Bl_ * coll.size();
    // Row tiles that stay in the cache from the GEMM to the download where the backend
    // has one (the CPU: ~2^20 elements); one tile of all rows elsewhere.
    const int64_t tile = be_.capabilities().cache_tile_elements;
    T_ = tile > 0 ? std::clamp<int64_t>(tile / B_, 1, Bl_) : Bl_;
    if (tile_rows > 0) T_ = std::min(tile_rows, Bl_);
    Arena measure;
    layout(measure);
    arena_ = Arena(be_, measure.used(), "jest scoring");
    layout(arena_);
}

void LearnabilityMatrix::layout(Arena& a) {
    const DType dt = be_.dtype();
    if (kind_ != ScoreKind::easy_reference) txt_l_ = a.alloc({B_, D_}, dt);
    if (kind_ != ScoreKind::hard_learner) txt_r_ = a.alloc({B_, D_}, dt);
    a_ = a.alloc({T_, B_}, dt);
    b_ = a.alloc({T_, B_}, dt);
}

namespace {
void check_input(Tensor t, int64_t rows, int64_t cols, DType dt, const char* what) {
    CC_CHECK(!t.empty(), "JEST scoring: ", what, " is missing");
    CC_CHECK(t.shape.rows() == rows && t.shape.cols() == cols, "JEST scoring: ", what, " has shape ",
             t.shape.str(), ", expected [", rows, ", ", cols, "]");
    CC_CHECK(t.dtype == dt, "JEST scoring: ", what, " is ", dtype_name(t.dtype), ", expected ",
             dtype_name(dt));
}
void check_scalars(LossKind loss, Tensor scale, Tensor bias) {
    CC_CHECK(!scale.empty() && scale.numel() == 1, "JEST scoring: logit scale must be a [1] tensor");
    if (loss == LossKind::sigmoid)
        CC_CHECK(!bias.empty() && bias.numel() == 1,
                 "JEST scoring: the sigmoid loss needs a logit bias [1] tensor");
}
}  // namespace

void LearnabilityMatrix::model_tile(Tensor img, Tensor txt_all, Tensor scale, Tensor bias, int64_t r0,
                                    Tensor out) {
    const int64_t rows = out.shape.rows();
    Tensor x = img.view({Bl_, D_}).slice_rows(r0, rows);
    if (loss_ == LossKind::sigmoid) {
        be_.matmul(out, x, txt_all, false, true);
        be_.curation().pairwise_sigmoid_nll(out, out, scale, bias, coll_.rank() * Bl_ + r0);
    } else {
        double t = 0.0;  // one scalar to the host: the GEMM's alpha
        be_.download(&t, scale);
        be_.matmul(out, x, txt_all, false, true, float(std::exp(t)));
    }
}

void LearnabilityMatrix::compute(const ScoringInputs& in, ScoreBlock& out) {
    const DType dt = be_.dtype();
    const bool use_l = kind_ != ScoreKind::easy_reference, use_r = kind_ != ScoreKind::hard_learner;
    if (use_l) {
        check_input(in.learner_img, Bl_, D_, dt, "learner image embeddings");
        check_input(in.learner_txt, Bl_, D_, dt, "learner text embeddings");
        check_scalars(loss_, in.learner_scale, in.learner_bias);
    }
    if (use_r) {
        check_input(in.ref_img, Bl_, D_, dt, "reference image embeddings");
        check_input(in.ref_txt, Bl_, D_, dt, "reference text embeddings");
        check_scalars(loss_, in.ref_scale, in.ref_bias);
    }
    out.loss = loss_;
    out.kind = kind_;
    out.B = B_;
    out.row_begin = coll_.rank() * Bl_;
    out.rows = Bl_;
    out.stats_valid = false;
    const size_t n = size_t(Bl_ * B_);
    if (use_l) coll_.allgather(txt_l_, in.learner_txt);
    if (use_r) coll_.allgather(txt_r_, in.ref_txt);
    // resize() keeps the capacity: no fresh pages after the first call.
    if (loss_ == LossKind::sigmoid) {
        out.learner.clear();
        out.reference.clear();
        out.learnerT.clear();
        out.referenceT.clear();
        out.L.resize(n);
        out.LT.resize(n);
    } else {
        out.L.clear();
        out.LT.clear();
        out.learner.resize(use_l ? n : 0);
        out.reference.resize(use_r ? n : 0);
        out.learnerT.resize(use_l ? n : 0);
        out.referenceT.resize(use_r ? n : 0);
    }
    uint32_t mx = 0;
    for (int64_t r0 = 0; r0 < Bl_; r0 += T_) {
        const int64_t rows = std::min(T_, Bl_ - r0);
        const size_t off = size_t(r0 * B_), cnt = size_t(rows * B_);
        Tensor a = a_.slice_rows(0, rows), b = b_.slice_rows(0, rows);
        if (use_l) model_tile(in.learner_img, txt_l_, in.learner_scale, in.learner_bias, r0, a);
        if (use_r) model_tile(in.ref_img, txt_r_, in.ref_scale, in.ref_bias, r0, b);
        if (loss_ == LossKind::sigmoid) {
            switch (kind_) {
                case ScoreKind::learnability:
                    be_.scale(b, -1.0f);
                    be_.add(a, a, b);
                    be_.download(out.L.data() + off, a);
                    break;
                case ScoreKind::hard_learner: be_.download(out.L.data() + off, a); break;
                case ScoreKind::easy_reference:
                    be_.scale(b, -1.0f);
                    be_.download(out.L.data() + off, b);
                    break;
            }
            be_.synchronize();
            mx = std::max(mx, max_abs_bits(out.L.data() + off, int64_t(cnt)));
            transpose_tile(out.L.data() + off, rows, B_, out.LT.data(), Bl_, r0);
        } else {
            if (use_l) be_.download(out.learner.data() + off, a);
            if (use_r) be_.download(out.reference.data() + off, b);
            be_.synchronize();
            if (use_l) {
                mx = std::max(mx, max_abs_bits(out.learner.data() + off, int64_t(cnt)));
                transpose_tile(out.learner.data() + off, rows, B_, out.learnerT.data(), Bl_, r0);
            }
            if (use_r) {
                mx = std::max(mx, max_abs_bits(out.reference.data() + off, int64_t(cnt)));
                transpose_tile(out.reference.data() + off, rows, B_, out.referenceT.data(), Bl_, r0);
            }
        }
    }
    out.all_finite = mx < 0x7f800000u;
    out.max_abs = out.all_finite ? double(std::bit_cast<float>(mx)) : 0.0;
    out.stats_valid = true;
}

}  // namespace curaclip::jest
