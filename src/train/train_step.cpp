#include "train/train_step.h"

#include <cmath>

namespace curaclip {

TrainStep::TrainStep(ClipModel& model, ContrastiveLoss& loss, Collectives& coll, size_t bucket_bytes)
    : model_(model), loss_(loss), coll_(coll), batch_(model.batch()), multires_(model.config().flexi()) {
    if (coll.size() > 1 && bucket_bytes > 0)
        reducer_ = std::make_unique<GradReducer>(model.params(), coll, bucket_bytes);
    CC_CHECK(loss.local_batch() == model.batch(), "loss laid out for a local batch of ", loss.local_batch(),
             " but the model for ", model.batch());
    CC_CHECK((loss.kind() == LossKind::sigmoid) == model.config().sigmoid_loss,
             "the model was built for the ", model.config().sigmoid_loss ? "sigmoid" : "softmax",
             " loss but the loss is ", loss_kind_name(loss.kind()));
}

void TrainStep::set_multires(bool on) {
    CC_REQUIRE(!on || model_.config().flexi(), "multi-resolution training needs model.flexi_patch > 0");
    multires_ = on;
}

double TrainStep::train_flops_per_pair() const {
    const ModelConfig& c = model_.config();
    return multires_ ? c.train_flops_per_pair(batch_) : 3.0 * c.forward_flops_per_pair();
}

double TrainStep::compute_gradients(const uint8_t* images, const int32_t* tokens) {
    // Eval or JEST scoring may have re-laid out the model in between: back to the training layout.
    model_.set_batch(batch_, multires_ ? ClipModel::Resolution::multires : ClipModel::Resolution::full);
    model_.set_inputs(images, tokens);
    model_.params().zero_grad();
    model_.forward();
    model_.zero_embedding_grads();
    Parameter* bias = model_.logit_bias();
    loss_.forward_backward(model_.image_embeddings(), model_.text_embeddings(), model_.logit_scale().value,
                           bias ? bias->value : Tensor{}, model_.d_image_embeddings(),
                           model_.d_text_embeddings(), model_.logit_scale().grad, bias ? bias->grad : Tensor{});
    if (reducer_) {
        reducer_->begin();
        model_.backward([this](size_t first, size_t count) { reducer_->ready(first, count); });
        reducer_->finish();
    } else {
        model_.backward();
        if (coll_.size() > 1)
            for (auto& p : model_.params().all()) coll_.allreduce_sum(p.grad);
    }
    return loss_.loss();
}

StepResult TrainStep::run(const uint8_t* images, const int32_t* tokens, AdamW& opt) {
    StepResult r;
    r.loss = compute_gradients(images, tokens);
    // A non-finite loss with finite gradients (an overflowing logit, say) is no step
    // to take either; the loss is global, so every rank decides the same.
    if (!std::isfinite(r.loss)) {
        r.grad_norm = std::nan("");
        r.skipped = true;
        return r;
    }
    r.grad_norm = opt.step();
    r.skipped = opt.skipped();
    return r;
}

}  // namespace curaclip
