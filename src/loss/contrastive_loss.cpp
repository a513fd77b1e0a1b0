#include "loss/contrastive_loss.h"

#include <algorithm>
#include <cctype>

#include "core/check.h"

namespace curaclip {

LossKind parse_loss_kind(const std::string& s) {
    std::string k = s;
    std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    if (k == "softmax" || k == "clip") return LossKind::softmax;
    if (k == "sigmoid" || k == "siglip") return LossKind::sigmoid;
    CC_USER_FAIL("unknown loss '", s, "': choose softmax (CLIP, alias clip) or sigmoid (SigLIP, alias siglip)");
}

Tensor capped_logit_scale(Backend& be, Tensor logit_scale, Tensor scratch, bool* capped) {
    double t = 0.0;
    be.download(&t, logit_scale.slice_rows(0, 1));
    const bool cap = t > kMaxLogitScale;  // false for NaN: a NaN scale must make the loss NaN
    if (capped) *capped = cap;
    if (!cap) return logit_scale;
    CC_CHECK(!scratch.empty() && scratch.shape.numel() >= 1, "capped_logit_scale: no scratch scalar");
    Tensor s = scratch.slice_rows(0, 1);
    be.fill(s, float(kMaxLogitScale));
    return s;
}

const char* loss_kind_name(LossKind k) {
    switch (k) {
        case LossKind::softmax: return "softmax";
        case LossKind::sigmoid: return "sigmoid";
    }
    return "?";
}

ContrastiveLoss::ContrastiveLoss(Backend& backend, LossKind kind, int64_t local_batch,
                                 int64_t embed_dim, Collectives& coll)
    : be_(backend), coll_(coll), kind_(kind), Bl_(local_batch), D_(embed_dim) {
    CC_CHECK(local_batch >= 1, "contrastive loss: local batch must be >= 1, got ", local_batch);
    CC_CHECK(embed_dim >= 1, "contrastive loss: embedding dim must be >= 1, got ", embed_dim);
    CC_CHECK(coll.size() >= 1 && coll.rank() >= 0 && coll.rank() < coll.size(),
             "contrastive loss: bad collectives (rank ", coll.rank(), " of ", coll.size(), ")");
    Bg_ = Bl_ * coll.size();
    Arena measure;
    layout(measure);
    arena_ = Arena(be_, measure.used(), "contrastive loss");
    layout(arena_);
}

void ContrastiveLoss::layout(Arena& a) {
    const DType dt = be_.dtype();
    if (kind_ == LossKind::softmax) {
        img_all_ = a.alloc({Bg_, D_}, dt);
        dimg_all_ = a.alloc({Bg_, D_}, dt);
    }
    txt_all_ = a.alloc({Bg_, D_}, dt);
    dtxt_all_ = a.alloc({Bg_, D_}, dt);
    dots_ = a.alloc({Bl_, Bg_}, dt);
    ddots_ = a.alloc({Bl_, Bg_}, dt);
    scratch_ = a.alloc({Bl_, D_}, dt);
    dummy_ = a.alloc({2}, dt);
    scale_cap_ = a.alloc({1}, dt);
    dscale_sink_ = a.alloc({1}, dt);
    loss_ = a.alloc({1}, dt == DType::f64 ? DType::f64 : DType::f32);
}

namespace {
void check_like(Tensor t, Shape shape, DType dt, const char* what) {
    CC_CHECK(!t.empty(), "contrastive loss: ", what, " is not allocated");
    CC_CHECK(t.shape.numel() == shape.numel() && t.shape.rows() == shape.rows(),
             "contrastive loss: ", what, " has shape ", t.shape.str(), ", expected ", shape.str());
    CC_CHECK(t.dtype == dt, "contrastive loss: ", what, " is ", dtype_name(t.dtype), ", expected ",
             dtype_name(dt));
}
}  // namespace

void ContrastiveLoss::forward_backward(Tensor img, Tensor txt, Tensor logit_scale,
                                       Tensor logit_bias, Tensor dimg, Tensor dtxt, Tensor dscale,
                                       Tensor dbias) {
    const DType dt = be_.dtype();
    const Shape emb{Bl_, D_};
    check_like(img, emb, dt, "image embeddings");
    check_like(txt, emb, dt, "text embeddings");
    check_like(logit_scale, {1}, logit_scale.dtype, "logit_scale");
    if (!dimg.empty()) check_like(dimg, emb, dt, "image embedding gradient");
    if (!dtxt.empty()) check_like(dtxt, emb, dt, "text embedding gradient");
    if (!dscale.empty()) check_like(dscale, {1}, dscale.dtype, "logit_scale gradient");
    // Views as matrices, whatever leading dimensions the caller used.
    img = img.view(emb);
    txt = txt.view(emb);
    if (!dimg.empty()) dimg = dimg.view(emb);
    if (!dtxt.empty()) dtxt = dtxt.view(emb);

    // The cap (see the header): above ln 100 the forward uses ln 100 and the gradient
    // of t is 0, so dscale receives nothing (the kernels' share goes to a sink).
    bool capped = false;
    logit_scale = capped_logit_scale(be_, logit_scale, scale_cap_, &capped);
    if (capped && !dscale.empty()) {
        be_.fill(dscale_sink_, 0.0f);
        dscale = dscale_sink_.view(dscale.shape);
    }
    be_.fill(loss_, 0.0f);
    if (kind_ == LossKind::softmax) {
        softmax(img, txt, logit_scale, dimg, dtxt, dscale);
    } else {
        check_like(logit_bias, {1}, logit_bias.dtype, "logit_bias (the sigmoid loss needs one)");
        if (!dbias.empty()) check_like(dbias, {1}, dbias.dtype, "logit_bias gradient");
        sigmoid(img, txt, logit_scale, logit_bias, dimg, dtxt, dscale, dbias);
    }
    // This rank's terms of the global mean -> the global loss, on every rank.
    coll_.allreduce_sum(loss_);
}

// Softmax (CLIP). Per direction: dots = anchors · others_allᵀ [Bl, Bg]; the row
// kernel turns them into this rank's loss terms and ddots = dL/ddots; then
//   d(anchors)    += ddots · others_all      (this rank's rows, complete)
//   d(others_all)  = ddotsᵀ · anchors        (every rank's rows: reduce-scatter)
void ContrastiveLoss::softmax(Tensor img, Tensor txt, Tensor scale, Tensor dimg, Tensor dtxt,
                              Tensor dscale) {
    const int64_t offset = int64_t(coll_.rank()) * Bl_;
    const float weight = float(0.5 / double(Bg_));
    const bool grads = !dimg.empty() || !dtxt.empty();
    Tensor ddots = grads ? ddots_ : Tensor{};

    coll_.allgather(img_all_, img);
    coll_.allgather(txt_all_, txt);

    // Images of this rank against all texts.
    be_.matmul(dots_, img, txt_all_, false, true);
    be_.softmax_xent_rows(loss_, ddots, dscale, dots_, scale, offset, weight);
    if (!dimg.empty()) be_.matmul(dimg, ddots_, txt_all_, false, false, 1.0f, 1.0f);
    if (!dtxt.empty()) be_.matmul(dtxt_all_, ddots_, img, true, false, 1.0f, 0.0f);

    // Texts of this rank against all images.
    be_.matmul(dots_, txt, img_all_, false, true);
    be_.softmax_xent_rows(loss_, ddots, dscale, dots_, scale, offset, weight);
    if (!dtxt.empty()) be_.matmul(dtxt, ddots_, img_all_, false, false, 1.0f, 1.0f);
    if (!dimg.empty()) be_.matmul(dimg_all_, ddots_, txt, true, false, 1.0f, 0.0f);

    // Gradients of the gathered features back to their owners.
    if (!dimg.empty()) {
        coll_.reduce_scatter_sum(scratch_, dimg_all_);
        be_.accumulate(dimg, scratch_);
    }
    if (!dtxt.empty()) {
        coll_.reduce_scatter_sum(scratch_, dtxt_all_);
        be_.accumulate(dtxt, scratch_);
    }
}

// Sigmoid (SigLIP): this rank's images against all texts, each pair once.
void ContrastiveLoss::sigmoid(Tensor img, Tensor txt, Tensor scale, Tensor bias, Tensor dimg,
                              Tensor dtxt, Tensor dscale, Tensor dbias) {
    const int64_t offset = int64_t(coll_.rank()) * Bl_;
    const float weight = float(1.0 / double(Bg_));
    // Unwanted scalar gradients go to a workspace scalar, so the kernel always
    // gets real tensors.
    if (dscale.empty()) dscale = dummy_.slice_rows(0, 1);
    if (dbias.empty()) dbias = dummy_.slice_rows(1, 1);

    coll_.allgather(txt_all_, txt);
    be_.matmul(dots_, img, txt_all_, false, true);
    be_.sigmoid_pairwise_rows(loss_, ddots_, dscale, dbias, dots_, scale, bias, offset, weight);
    if (!dimg.empty()) be_.matmul(dimg, ddots_, txt_all_, false, false, 1.0f, 1.0f);
    if (!dtxt.empty()) {
        be_.matmul(dtxt_all_, ddots_, img, true, false, 1.0f, 0.0f);
        coll_.reduce_scatter_sum(scratch_, dtxt_all_);
        be_.accumulate(dtxt, scratch_);
    }
}

double ContrastiveLoss::loss() {
    double v = 0.0;
    be_.download(&v, loss_);
    return v;
}

}  // namespace curaclip
