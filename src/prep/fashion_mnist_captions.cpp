#include "prep/fashion_mnist_captions.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>

#include "core/check.h"
#include "core/philox.h"

namespace curaclip::prep {
namespace {

// Philox step key of the caption template stream (kept apart from the noise draws).
constexpr uint64_t kCaptionStream = 0xCA97105ull;

float quantile(std::vector<float> v, double q) {
    CC_CHECK(!v.empty(), "caption thresholds need at least one image");
    const size_t k = std::min(v.size() - 1, size_t(q * double(v.size())));
    std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(k), v.end());
    return v[k];
}

std::string lower(std::string s) {
    for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// {c} class, {b} brightness, {s} size, {t} texture.
// Short enough for a 16-token context: at most 6 template pieces, so with the
// longest class name ("t-shirt/top", 5 pieces) and 3 one-piece attributes a
// caption is <= 14 BPE pieces + start/end of text.
const char* const kTemplates[] = {
    "a photo of a {b}, {s} {t} {c}",
    "a {b} {c}, {s} and {t}",
    "a {s} {c} that looks {b} and {t}",
    "a {t} {b} {c} filling a {s} area",
    "an image of a {s}, {b} {t} {c}",
    "a {b} {c} with a {t} texture, {s}",
    "{s} {b} {c}, {t} surface",
    "a {b} {c} of {s} size, {t}",
};
constexpr int kNumTemplates = int(sizeof(kTemplates) / sizeof(kTemplates[0]));

}  // namespace

ImageStats image_stats(const uint8_t* px, int h, int w, int c) {
    const int n = h * w;
    double sum = 0, sum2 = 0;
    int count = 0;
    for (int i = 0; i < n; ++i) {
        int v = 0;
        for (int k = 0; k < c; ++k) v += px[size_t(i) * c + k];
        const double x = double(v) / c;
        if (x > kObjectThreshold) {
            sum += x;
            sum2 += x * x;
            ++count;
        }
    }
    ImageStats s;
    s.coverage = float(count) / float(n);
    if (count > 0) {
        const double mean = sum / count;
        s.brightness = float(mean);
        s.texture = float(std::sqrt(std::max(0.0, sum2 / count - mean * mean)));
    }
    return s;
}

std::vector<ImageStats> image_stats_batch(const uint8_t* px, int64_t n, int h, int w, int c) {
    std::vector<ImageStats> out(static_cast<size_t>(n));
    const size_t stride = size_t(h) * w * c;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) out[size_t(i)] = image_stats(px + size_t(i) * stride, h, w, c);
    return out;
}

std::string CaptionThresholds::to_string() const {
    std::ostringstream os;
    os << "brightness " << brightness[0] << " " << brightness[1] << "; coverage " << coverage[0] << " "
       << coverage[1] << "; texture " << texture << "; object pixel > " << kObjectThreshold;
    return os.str();
}

CaptionThresholds caption_thresholds(const std::vector<ImageStats>& stats) {
    std::vector<float> b, c, t;
    b.reserve(stats.size());
    c.reserve(stats.size());
    t.reserve(stats.size());
    for (const auto& s : stats) {
        b.push_back(s.brightness);
        c.push_back(s.coverage);
        t.push_back(s.texture);
    }
    CaptionThresholds th;
    th.brightness[0] = quantile(b, 1.0 / 3);
    th.brightness[1] = quantile(b, 2.0 / 3);
    th.coverage[0] = quantile(c, 1.0 / 3);
    th.coverage[1] = quantile(c, 2.0 / 3);
    th.texture = quantile(t, 0.5);
    return th;
}

CaptionAttributes caption_attributes(const ImageStats& s, const CaptionThresholds& t) {
    CaptionAttributes a{};
    a.brightness = s.brightness < t.brightness[0] ? "dark" : s.brightness < t.brightness[1] ? "gray" : "bright";
    a.size = s.coverage < t.coverage[0] ? "small" : s.coverage < t.coverage[1] ? "medium" : "large";
    a.texture = s.texture < t.texture ? "plain" : "patterned";
    return a;
}

int num_caption_templates() { return kNumTemplates; }

std::string make_caption(const std::string& classname, const CaptionAttributes& a, int template_id) {
    const char* tpl = kTemplates[((template_id % kNumTemplates) + kNumTemplates) % kNumTemplates];
    const std::string cls = lower(classname);
    std::string out;
    for (const char* p = tpl; *p; ++p) {
        if (p[0] == '{' && p[1] && p[2] == '}') {
            switch (p[1]) {
                case 'c': out += cls; break;
                case 'b': out += a.brightness; break;
                case 's': out += a.size; break;
                case 't': out += a.texture; break;
                default: CC_FAIL("bad caption template placeholder in '", tpl, "'");
            }
            p += 2;
        } else {
            out += *p;
        }
    }
    return out;
}

std::vector<std::string> make_captions(const std::vector<ImageStats>& stats,
                                       const std::vector<int32_t>& labels,
                                       const std::vector<std::string>& classnames,
                                       const CaptionThresholds& t, uint64_t seed, uint32_t stream) {
    CC_CHECK(stats.size() == labels.size(), "make_captions: ", stats.size(), " images but ",
             labels.size(), " labels");
    const Philox rng(seed, RngPurpose::noise, kCaptionStream, stream);
    std::vector<std::string> out(stats.size());
    for (size_t i = 0; i < stats.size(); ++i) {
        CC_CHECK(labels[i] >= 0 && size_t(labels[i]) < classnames.size(), "make_captions: label ",
                 labels[i], " of example ", i, " has no class name (", classnames.size(), " classes)");
        uint32_t r[4];
        rng.block(i, r);
        out[i] = make_caption(classnames[size_t(labels[i])], caption_attributes(stats[i], t),
                              int(r[0] % uint32_t(kNumTemplates)));
    }
    return out;
}

}  // namespace curaclip::prep
