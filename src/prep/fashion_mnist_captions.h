// Captions for image-classification data that say more than the class: the
// class name plus three attributes measured on the pixels (docs/data.md):
//   brightness  dark / gray / bright       mean intensity of the object pixels
//   size        small / medium / large     fraction of the frame the object covers
//   texture     plain / patterned          intensity std-dev inside the object
// The object is every pixel brighter than kObjectThreshold. Thresholds are the
// tertiles (size, brightness) and the median (texture) of the training set, so
// each word is about equally frequent; the test set uses the training thresholds.
// Each caption uses one of several templates, chosen per example by Philox.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace curaclip::prep {

inline constexpr int kObjectThreshold = 32;  // pixel > this: part of the object

struct ImageStats {
    float brightness = 0;  // mean intensity of the object pixels, [0, 255]
    float coverage = 0;    // fraction of pixels in the object, [0, 1]
    float texture = 0;     // std-dev of the object's intensities
};

// Statistics of one grayscale (or, averaged over channels, colour) image.
ImageStats image_stats(const uint8_t* pixels, int height, int width, int channels);
std::vector<ImageStats> image_stats_batch(const uint8_t* pixels, int64_t n, int height, int width,
                                          int channels);

struct CaptionThresholds {
    float brightness[2] = {0, 0};  // dark < b[0] <= gray < b[1] <= bright
    float coverage[2] = {0, 0};    // small < c[0] <= medium < c[1] <= large
    float texture = 0;             // plain < t <= patterned
    std::string to_string() const;
};

// Tertiles / median of the given statistics (the training set).
CaptionThresholds caption_thresholds(const std::vector<ImageStats>& stats);

struct CaptionAttributes {
    const char* brightness;  // "dark", "gray", "bright"
    const char* size;        // "small", "medium", "large"
    const char* texture;     // "plain", "patterned"
};
CaptionAttributes caption_attributes(const ImageStats& s, const CaptionThresholds& t);

int num_caption_templates();
// One caption with template `template_id` (mod num_caption_templates()). The
// class name is written in lower case ("t-shirt/top").
std::string make_caption(const std::string& classname, const CaptionAttributes& a, int template_id);

// Captions of a whole split: the template of example i is drawn from
// Philox(seed, noise purpose, kCaptionStream, stream) block i, so it depends only
// on (seed, stream, i). Use stream 0 for the training split, 1 for the test split.
std::vector<std::string> make_captions(const std::vector<ImageStats>& stats,
                                       const std::vector<int32_t>& labels,
                                       const std::vector<std::string>& classnames,
                                       const CaptionThresholds& t, uint64_t seed, uint32_t stream);

}  // namespace curaclip::prep
