// Evaluation of a model on an HDF5 evaluation set, distributed over ranks:
// each rank embeds its contiguous block of the captions and of the distinct
// images, the blocks are summed into the full matrices (all-reduce), and every
// rank computes zero-shot accuracy (class names x prompt templates: top-1,
// top-5, mean per-class recall) and retrieval R@1/5/10 (docs/evaluation.md).
//
// DISTINCT IMAGES. With /image_ids (io/dataset_reader.h) rows with the same id
// show the same image (COCO/Flickr: one image, several captions). The distinct
// images, in order of first occurrence, are embedded once each (from the first
// row of their group), are the items of text->image retrieval and the queries
// of image->text retrieval (eval/metrics.h), and are what zero-shot classifies
// (with the first row's label; rows of one image must agree on it). Without
// /image_ids every row is its own image.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/metrics.h"
#include "mpi/communicator.h"

namespace curaclip {

struct EvalReport {
    ZeroShotResult zero_shot;  // n = 0 when the set has no labels/class names
    int64_t templates = 0;     // prompt templates per class (0: no zero-shot)
    RetrievalResult retrieval;
    std::string dataset;
};

// Every rank's copy of an evaluation set's embeddings by one model.
//
// IDENTICAL INPUTS (ties by identity, eval/metrics.h). Captions with identical
// token rows are one text: each distinct row is embedded once and its embedding
// copied to every row that holds it (dup.texts). Distinct images with identical
// pixels (a 128-bit hash of the pixels, so two images are taken for one only if
// their hashes agree in all 128 bits) get the embedding of the first of them
// (dup.images). Classes with the same name are one class (dup.classes). So the
// metrics do not depend on the batch a caption or image happened to share.
struct EvalEmbeddings {
    int64_t n = 0, dim = 0;            // n = rows = captions
    int64_t n_images = 0;              // distinct images (= n without /image_ids)
    std::vector<float> images;         // [n_images, dim], L2-normalized (empty with images = false)
    std::vector<float> texts;          // [n, dim] in row order, L2-normalized
    std::vector<int64_t> text_image;   // [n]: the image (in [0, n_images)) of each row/caption
    std::vector<int64_t> image_rows;   // [n_images]: the first row of each image (whose pixels were embedded)
    std::vector<int32_t> labels;       // [n_images]: each image's label (-1 without /labels)
    std::vector<std::string> classnames;
    DuplicateInputs dup;               // texts [n], images [n_images] (empty with images = false), classes [K]
    int64_t distinct_texts = 0;        // token rows embedded
    bool has_labels = false;
    bool has_image_ids = false;
};
// Collective over comm: each rank embeds its block of the distinct captions and
// of the distinct images, the blocks are all-reduced. images = false skips the
// image tower (e.g. a routing model needs captions only). model_label names the
// model in errors (e.g. "checkpoint runs/x/step_00000100.h5").
// Errors: a file that does not fit the model (image size, channels, context
// length, tokenizer id, token ids outside the tokenizer or the model's vocabulary:
// io::DatasetExpect), a tokenizer with more ids than the model's vocabulary, rows
// of one image with different labels, and embeddings that are not finite (NaN or
// Inf: the message names model_label, the dataset and the first rows).
EvalEmbeddings embed_eval_set(ClipModel& model, const BpeTokenizer& tok, const std::string& eval_path,
                              const Communicator& comm, bool images = true,
                              const std::string& model_label = "the model");

EvalReport evaluate(ClipModel& model, const BpeTokenizer& tok, const std::string& eval_path,
                    const Communicator& comm, const std::vector<std::string>& templates = default_templates(),
                    const std::string& model_label = "the model");

// The metrics of embeddings already computed (no model calls): zero-shot with
// class_emb [K, dim] (ignored when !e.has_labels), retrieval over the distinct
// images, ties decided by e.dup.
EvalReport evaluate_embeddings(const EvalEmbeddings& e, const std::vector<float>& class_emb, int64_t templates,
                               const std::string& dataset);

// A fixed-width table of the report, for the terminal.
std::string format_report(const EvalReport& r);
// The report as a flat JSON object body (no braces): "zeroshot_top1": ..., ...
// Fields: zeroshot_top1, zeroshot_top5, zeroshot_mean_per_class_recall,
// zeroshot_images, zeroshot_classes, zeroshot_templates, i2t_r1/5/10, t2i_r1/5/10,
// eval_pairs (= eval_captions, kept for earlier readers), eval_images, eval_captions.
// The report's figures as JSON fields (fractions rounded to 6 decimals), in a fixed
// order: zeroshot_top1, zeroshot_top5, zeroshot_mean_per_class_recall,
// zeroshot_images, zeroshot_classes, zeroshot_templates, i2t_r1/r5/r10,
// t2i_r1/r5/r10, eval_pairs, eval_images, eval_captions.
nlohmann::ordered_json report_json(const EvalReport& r);
// The same fields as the inside of a JSON object ("\"zeroshot_top1\": 0.8221, ..."),
// for writers that add fields around them.
std::string report_json_fields(const EvalReport& r);

}  // namespace curaclip
