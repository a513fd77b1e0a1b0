#include "jest/reference.h"

#include <cstring>

#include "io/checkpoint.h"
#include "io/hdf5_file.h"

namespace curaclip::jest {


ReferenceSource::ReferenceSource(Backend& be, const std::string& checkpoint, const std::string& cache,
                                 int64_t local_batch, int64_t dataset_size)
    : be_(be), local_batch_(local_batch) {
    CC_CHECK(!checkpoint.empty(), "JEST scores with a reference model: set jest.reference to its checkpoint");
    const ModelConfig cfg = checkpoint_model_config(checkpoint);
    dim_ = cfg.embed_dim;
    // Scale and bias come from the checkpoint in every mode.
    H5File ck(checkpoint, H5File::Mode::read);
    const std::vector<float> scale = ck.read_f32("params/logit_scale");
    std::vector<float> bias;
    if (ck.exists("params/logit_bias")) bias = ck.read_f32("params/logit_bias");
    if (cache.empty()) {
        model_ = std::make_unique<ClipModel>(be, cfg, local_batch);
        load_checkpoint(checkpoint, model_->params(), /*with_optimizer=*/false);
    } else {
        H5File f(cache, H5File::Mode::read);
        std::vector<int64_t> si, st;
        cache_img_ = f.read_f32("image_emb", &si);
        cache_txt_ = f.read_f32("caption_emb", &st);
        CC_CHECK(si.size() == 2 && si == st, cache, ": /image_emb and /caption_emb must both be [N, D]");
        CC_CHECK(si[0] == dataset_size, cache, ": cached embeddings of ", si[0], " examples, the dataset has ",
                 dataset_size, " (embed the same dataset with `curaclip embed --what both`)");
        CC_CHECK(si[1] == dim_, cache, ": embeddings of dimension ", si[1], " but the reference checkpoint ",
                 checkpoint, " has embed_dim ", dim_);
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
