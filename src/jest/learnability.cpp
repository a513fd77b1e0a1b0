#include "jest/learnability.h"

#include <cmath>

namespace curaclip::jest {

LearnabilityMatrix::LearnabilityMatrix(Backend& backend, Collectives& coll, LossKind loss,
                                       ScoreKind kind, int64_t local_batch, int64_t embed_dim)
    : be_(backend), coll_(coll), loss_(loss), kind_(kind), Bl_(local_batch), D_(embed_dim) {
    CC_CHECK(local_batch >= 1, "JEST scoring: local batch must be >= 1, got ", local_batch);
    CC_CHECK(embed_dim >= 1, "JEST scoring: embedding dim must be >= 1, got ", embed_dim);
    B_ = Bl_ * coll.size();
    Arena measure;
    layout(measure);
    arena_ = Arena(be_, measure.used(), "jest scoring");
    layout(arena_);
}

void LearnabilityMatrix::layout(Arena& a) {
    const DType dt = be_.dtype();
    txt_all_ = a.alloc({B_, D_}, dt);
    a_ = a.alloc({Bl_, B_}, dt);
    b_ = a.alloc({Bl_, B_}, dt);
}

namespace {
void check_input(Tensor t, int64_t rows, int64_t cols, DType dt, const char* what) {
    CC_CHECK(!t.empty(), "JEST scoring: ", what, " is missing");
    CC_CHECK(t.shape.rows() == rows && t.shape.cols() == cols, "JEST scoring: ", what, " has shape ",
             t.shape.str(), ", expected [", rows, ", ", cols, "]");
    CC_CHECK(t.dtype == dt, "JEST scoring: ", what, " is ", dtype_name(t.dtype), ", expected ",
             dtype_name(dt));
}
}  // namespace

void LearnabilityMatrix::model_block(Tensor img, Tensor txt, Tensor scale, Tensor bias, Tensor out) {
    coll_.allgather(txt_all_, txt);
    CC_CHECK(!scale.empty() && scale.numel() == 1, "JEST scoring: logit scale must be a [1] tensor");
    if (loss_ == LossKind::sigmoid) {
        CC_CHECK(!bias.empty() && bias.numel() == 1,
                 "JEST scoring: the sigmoid loss needs a logit bias [1] tensor");
        be_.matmul(out, img, txt_all_, false, true);
        be_.pairwise_sigmoid_nll(out, out, scale, bias, coll_.rank() * Bl_);
    } else {
        double t = 0.0;  // one scalar to the host: the GEMM's alpha
        be_.download(&t, scale);
        be_.matmul(out, img, txt_all_, false, true, float(std::exp(t)));
    }
}

void LearnabilityMatrix::compute(const ScoringInputs& in, ScoreBlock& out) {
    const DType dt = be_.dtype();
    const bool use_l = kind_ != ScoreKind::easy_reference, use_r = kind_ != ScoreKind::hard_learner;
    if (use_l) {
        check_input(in.learner_img, Bl_, D_, dt, "learner image embeddings");
        check_input(in.learner_txt, Bl_, D_, dt, "learner text embeddings");
    }
    if (use_r) {
        check_input(in.ref_img, Bl_, D_, dt, "reference image embeddings");
        check_input(in.ref_txt, Bl_, D_, dt, "reference text embeddings");
    }
    out.loss = loss_;
    out.kind = kind_;
    out.B = B_;
    out.row_begin = coll_.rank() * Bl_;
    out.rows = Bl_;
    const size_t n = size_t(Bl_ * B_);
    if (use_l) model_block(in.learner_img, in.learner_txt, in.learner_scale, in.learner_bias, a_);
    if (use_r) model_block(in.ref_img, in.ref_txt, in.ref_scale, in.ref_bias, b_);
    if (loss_ == LossKind::sigmoid) {
        out.learner.clear();
        out.reference.clear();
        out.L.resize(n);
        switch (kind_) {
            case ScoreKind::learnability:
                be_.scale(b_, -1.0f);
                be_.add(a_, a_, b_);
                be_.download(out.L.data(), a_);
                break;
            case ScoreKind::hard_learner: be_.download(out.L.data(), a_); break;
            case ScoreKind::easy_reference:
                be_.scale(b_, -1.0f);
                be_.download(out.L.data(), b_);
                break;
        }
    } else {
        out.L.clear();
        out.learner.resize(use_l ? n : 0);
        out.reference.resize(use_r ? n : 0);
        if (use_l) be_.download(out.learner.data(), a_);
        if (use_r) be_.download(out.reference.data(), b_);
    }
    be_.synchronize();
}

}  // namespace curaclip::jest
