// MoDE with a separate sentence encoder (issue 14; Ma et al. 2024 cluster captions
// with SimCSE): the texts of a task (class names through the prompt templates, the
// captions of an evaluation set) embedded by the encoder that made the fine centers,
// and the check that it IS that encoder.
//
// The side files carry the encoder's identity (encoder::BertEncoder::id(): folder
// name, pooling and a fingerprint of config.json, vocab.txt and the weights' header)
// from `embed --encoder` through `cluster` to the assignment; routing with another
// encoder, or with a CLIP checkpoint when an encoder made the centers (or the other
// way round), is refused: distances to centers of another embedding space route
// every task arbitrarily.
#pragma once

#include <string>
#include <vector>

#include "encoder/bert_encoder.h"
#include "mode/experts.h"
#include "mpi/communicator.h"

namespace curaclip::mode {

// Error (naming the side file, both ids and the folder) unless a's centers were made
// by enc. An assignment made from a CLIP text tower (no encoder_id) is refused too.
void check_routing_encoder(const Assignment& a, const encoder::BertEncoder& enc);

// [K, D]: class name k through every template (eval/templates.h apply_template),
// embedded, averaged over the templates and L2-normalized, as the CLIP zero-shot
// classifier does with a text tower (open_clip's zero_shot_classifier).
std::vector<float> encoder_class_embeddings(encoder::BertEncoder& enc, const std::vector<std::string>& classnames,
                                            const std::vector<std::string>& templates);

// [N, D]: the /captions of a dataset in row order. Collective: each rank embeds its
// block (mode::block_of) and the blocks are summed into every rank's copy.
std::vector<float> encoder_caption_embeddings(encoder::BertEncoder& enc, const std::string& data_path,
                                              const Communicator& comm);

}  // namespace curaclip::mode
