#include "jest/reference.h"

#include <cmath>
#include <cstring>

#include "interop/weights_file.h"
#include "model/checkpoint.h"
#include "io/hdf5_file.h"

namespace curaclip::jest {


namespace {
// Every value finite, or an Error naming the file, what it is and the first bad index.
void require_finite(const std::vector<float>& v, const std::string& file, const char* what, int64_t row_len) {
    for (size_t i = 0; i < v.size(); ++i)
        CC_REQUIRE(std::isfinite(v[i]), file, ": ", what, " holds a non-finite value (", v[i], ") at ",
                   row_len > 1 ? "row " : "index ", row_len > 1 ? int64_t(i) / row_len : int64_t(i),
                   ": the reference must be a healthy model");
}
}  // namespace

ReferenceSource::ReferenceSource(Backend& be, const std::string& checkpoint, const std::string& cache,
                                 int64_t local_batch, int64_t dataset_size, const ModelConfig& learner,
                                 int tokenizer_vocab)
    : be_(be), local_batch_(local_batch) {
    CC_REQUIRE(!checkpoint.empty(), "JEST scores with a reference model: set jest.reference to its checkpoint");
    const ModelConfig cfg = weights_model_config(checkpoint);
    dim_ = cfg.embed_dim;
    CC_REQUIRE(cfg.image_size == learner.image_size && cfg.channels == learner.channels &&
                   cfg.context_length == learner.context_length,
               "jest.reference ", checkpoint, " takes ", cfg.image_size, " px images with ", cfg.channels,
               " channels and ", cfg.context_length, " tokens, the learner's data has ", learner.image_size, " px, ",
               learner.channels, " channels and ", learner.context_length, " tokens");
    CC_REQUIRE(tokenizer_vocab <= cfg.vocab_size, "jest.reference ", checkpoint, " has a vocabulary of ",
               cfg.vocab_size, " ids, the training tokenizer has ", tokenizer_vocab,
               " (train the reference with the same tokenizer)");
    // Scale and bias come from the checkpoint in every mode.
    // (an HDF5 checkpoint or an open_clip .safetensors file: interop/weights_file.h)
    const std::vector<float> scale = weights_parameter(checkpoint, "logit_scale");
    CC_REQUIRE(!scale.empty(), "jest.reference ", checkpoint, " has no logit_scale");
    const std::vector<float> bias = weights_parameter(checkpoint, "logit_bias");
    require_finite(scale, checkpoint, "params/logit_scale", 1);
    require_finite(bias, checkpoint, "params/logit_bias", 1);
    if (cache.empty()) {
        model_ = std::make_unique<ClipModel>(be, cfg, local_batch);
        load_weights(checkpoint, model_->params(), /*with_optimizer=*/false);
    } else {
        H5File f(cache, H5File::Mode::read);
        std::vector<int64_t> si, st;
        cache_img_ = f.read_f32("image_emb", &si);
        cache_txt_ = f.read_f32("caption_emb", &st);
        CC_REQUIRE(si.size() == 2 && si == st, cache, ": /image_emb and /caption_emb must both be [N, D]");
        CC_REQUIRE(si[0] == dataset_size, cache, ": cached embeddings of ", si[0], " examples, the dataset has ",
                   dataset_size, " (embed the same dataset with `curaclip embed --what both`)");
        CC_REQUIRE(si[1] == dim_, cache, ": embeddings of dimension ", si[1], " but the reference checkpoint ",
                   checkpoint, " has embed_dim ", dim_);
        require_finite(cache_img_, cache, "/image_emb", dim_);
        require_finite(cache_txt_, cache, "/caption_emb", dim_);
    }
    Arena measure;
    auto lay = [&](Arena& a) {
        img_ = a.alloc({local_batch, dim_}, be.dtype());
        txt_ = a.alloc({local_batch, dim_}, be.dtype());
        scale_ = a.alloc({1}, be.dtype());
        bias_ = bias.empty() ? Tensor{} : a.alloc({1}, be.dtype());
    };
    lay(measure);
    arena_ = Arena(be, measure.used(), "jest_reference");
    lay(arena_);
    be.upload(scale_, scale.data());
    if (!bias.empty()) be.upload(bias_, bias.data());
}

void ReferenceSource::embed(const io::Batch& super) {
    CC_CHECK(super.size == local_batch_, "reference: super-batch share of ", super.size, " rows, laid out for ",
             local_batch_);
    if (model_) {
        model_->set_batch(local_batch_);
        model_->set_inputs(super.images.data(), super.tokens.data());
        model_->forward();
        be_.copy(img_, model_->image_embeddings());
        be_.copy(txt_, model_->text_embeddings());
        return;
    }
    std::vector<float> img(size_t(local_batch_ * dim_)), txt(img.size());
    for (int64_t i = 0; i < local_batch_; ++i) {
        const int64_t row = super.indices[size_t(i)];
        std::memcpy(&img[size_t(i * dim_)], &cache_img_[size_t(row * dim_)], size_t(dim_) * sizeof(float));
        std::memcpy(&txt[size_t(i * dim_)], &cache_txt_[size_t(row * dim_)], size_t(dim_) * sizeof(float));
    }
    be_.upload(img_, img.data());
    be_.upload(txt_, txt.data());
}

double ReferenceSource::flops_per_example() const {
    return model_ ? model_->config().forward_flops_per_pair() : 0.0;
}

}  // namespace curaclip::jest
