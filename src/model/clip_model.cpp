#include "model/clip_model.h"

#include <sstream>

namespace curaclip {

ClipModel::ClipModel(Backend& be, const ModelConfig& cfg, int64_t max_batch)
    : be_(&be), config_(cfg), params_(be), max_batch_(max_batch) {
    cfg.validate();
    CC_CHECK(max_batch > 0, "batch size must be positive, got ", max_batch);
    vision_.declare(params_, cfg);
    text_.declare(params_, cfg);
    logit_scale_ = params_.declare("logit_scale", {1}, false);
    if (cfg.sigmoid_loss) logit_bias_ = params_.declare("logit_bias", {1}, false);
    params_.finalize();

    Arena measure;
    layout(measure, max_batch);
    activations_ = Arena(be, measure.used(), "activations");
    layout(activations_, max_batch);
}

void ClipModel::layout(Arena& arena, int64_t b) {
    arena.reset();
    vision_.layout(arena, be_->dtype(), b);
    text_.layout(arena, be_->dtype(), b);
    batch_ = b;
}

void ClipModel::set_batch(int64_t b) {
    CC_CHECK(b > 0 && b <= max_batch_, "batch ", b, " outside [1, ", max_batch_, "] this model was laid out for");
    if (b != batch_) layout(activations_, b);
}

void ClipModel::init_weights(uint64_t seed) { init_clip_weights(params_, config_, seed); }

void ClipModel::set_inputs(const uint8_t* images, const int32_t* tokens) {
    if (images) vision_.set_images(*be_, images);
    if (tokens) text_.set_tokens(*be_, tokens);
}

void ClipModel::forward_image() { vision_.forward(*be_, params_); }
void ClipModel::forward_text() { text_.forward(*be_, params_); }

void ClipModel::zero_embedding_grads() {
    be_->fill(d_image_embeddings(), 0.0f);
    be_->fill(d_text_embeddings(), 0.0f);
}

void ClipModel::backward() {
    vision_.backward(*be_, params_);
    text_.backward(*be_, params_);
}

std::string ClipModel::memory_report() const {
    std::ostringstream os;
    os << "model: " << config_.summary() << "\n"
       << "parameters: " << params_.count() << " in " << params_.size() << " tensors\n"
       << "arenas: parameters " << format_bytes(params_.value_bytes()) << ", gradients "
       << format_bytes(params_.grad_bytes()) << ", optimizer " << format_bytes(params_.optimizer_bytes())
       << ", activations " << format_bytes(activations_.capacity()) << " (batch " << max_batch_ << ")";
    return os.str();
}

}  // namespace curaclip
