#include "eval/embed.h"

#include <algorithm>
#include <cstring>

namespace curaclip {

namespace {
template <typename In, typename SetInput, typename Forward, typename Output>
std::vector<float> embed_chunks(ClipModel& model, const In* data, int64_t n, int64_t row, SetInput set_input,
                                Forward forward, Output output) {
    const int64_t B = model.max_batch(), D = model.config().embed_dim;
    model.set_batch(B);
    std::vector<float> out(size_t(n * D));
    std::vector<In> chunk(size_t(B * row));
    std::vector<float> emb(size_t(B * D));
    for (int64_t start = 0; start < n; start += B) {
        const int64_t m = std::min(B, n - start);
        std::fill(chunk.begin(), chunk.end(), In(0));
        std::memcpy(chunk.data(), data + start * row, size_t(m * row) * sizeof(In));
        set_input(chunk.data());
        forward();
        model.backend().download(emb.data(), output());
        std::memcpy(out.data() + start * D, emb.data(), size_t(m * D) * sizeof(float));
    }
    return out;
}
}  // namespace

std::vector<float> embed_images(ClipModel& model, const uint8_t* images, int64_t n) {
    const ModelConfig& c = model.config();
    const int64_t row = int64_t(c.image_size) * c.image_size * c.channels;
    return embed_chunks(
        model, images, n, row, [&](const uint8_t* p) { model.set_inputs(p, nullptr); },
        [&] { model.forward_image(); }, [&] { return model.image_embeddings(); });
}

std::vector<float> embed_texts(ClipModel& model, const int32_t* tokens, int64_t n) {
    const ModelConfig& c = model.config();
    // Padding rows must still hold an end-of-text token for the argmax pooling: all zeros is fine
    // (argmax of a zero row is position 0), and their embeddings are dropped anyway.
    return embed_chunks(
        model, tokens, n, c.context_length, [&](const int32_t* p) { model.set_inputs(nullptr, p); },
        [&] { model.forward_text(); }, [&] { return model.text_embeddings(); });
}

}  // namespace curaclip
