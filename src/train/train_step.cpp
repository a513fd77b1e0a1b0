#include "train/train_step.h"

namespace curaclip {

TrainStep::TrainStep(ClipModel& model, ContrastiveLoss& loss, Collectives& coll)
    : model_(model), loss_(loss), coll_(coll) {
    CC_CHECK(loss.local_batch() == model.batch(), "loss laid out for a local batch of ", loss.local_batch(),
             " but the model for ", model.batch());
    CC_CHECK((loss.kind() == LossKind::sigmoid) == model.config().sigmoid_loss,
             "the model was built for the ", model.config().sigmoid_loss ? "sigmoid" : "softmax",
             " loss but the loss is ", loss_kind_name(loss.kind()));
}

double TrainStep::compute_gradients(const uint8_t* images, const int32_t* tokens) {
    model_.set_inputs(images, tokens);
    model_.params().zero_grad();
    model_.forward();
    model_.zero_embedding_grads();
    Parameter* bias = model_.logit_bias();
    loss_.forward_backward(model_.image_embeddings(), model_.text_embeddings(), model_.logit_scale().value,
                           bias ? bias->value : Tensor{}, model_.d_image_embeddings(),
                           model_.d_text_embeddings(), model_.logit_scale().grad, bias ? bias->grad : Tensor{});
    model_.backward();
    if (coll_.size() > 1)
        for (auto& p : model_.params().all()) coll_.allreduce_sum(p.grad);
    return loss_.loss();
}

StepResult TrainStep::run(const uint8_t* images, const int32_t* tokens, AdamW& opt) {
    StepResult r;
    r.loss = compute_gradients(images, tokens);
    r.grad_norm = opt.step();
    r.skipped = opt.skipped();
    return r;
}

}  // namespace curaclip
