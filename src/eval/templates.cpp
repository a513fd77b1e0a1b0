#include "eval/templates.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/check.h"

namespace curaclip {

namespace {

// OpenAI CLIP's 80 ImageNet prompt templates, in the order of open_clip's
// OPENAI_IMAGENET_TEMPLATES (each `lambda c: f'...{c}...'` with {c} written {}).
const char* const kOpenAiImagenet[] = {
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
};

// open_clip's SIMPLE_IMAGENET_TEMPLATES (a subset of the 80, from OpenAI's
// Prompt_Engineering_for_ImageNet notebook).
const char* const kSimpleImagenet[] = {
    "itap of a {}.",    "a bad photo of the {}.", "a origami {}.",         "a photo of the large {}.",
    "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
};

std::string names_list() {
    std::string s;
    for (const auto& n : template_set_names()) s += (s.empty() ? "" : ", ") + n;
    return s;
}

std::string trim(const std::string& s) {
    const char* ws = " \t\r\n";
    const size_t b = s.find_first_not_of(ws);
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

}  // namespace

std::vector<std::string> template_set_names() { return {"default", "openai_imagenet", "simple"}; }

std::vector<std::string> builtin_templates(const std::string& name) {
    if (name == "default")
        return {"a photo of a {}.", "a {}.", "a picture of a {}.", "an image of a {}.", "a photo of the {}."};
    if (name == "openai_imagenet") return {std::begin(kOpenAiImagenet), std::end(kOpenAiImagenet)};
    if (name == "simple") return {std::begin(kSimpleImagenet), std::end(kSimpleImagenet)};
    CC_USER_FAIL("unknown prompt template set '", name, "' (built-in sets: ", names_list(), ")");
}

bool has_placeholder(const std::string& t) {
    return t.find("{}") != std::string::npos || t.find("{c}") != std::string::npos;
}

std::string apply_template(const std::string& t, const std::string& classname) {
    CC_REQUIRE(has_placeholder(t), "prompt template '", t, "' has no {} (or {c}) for the class name");
    std::string out;
    out.reserve(t.size() + classname.size());
    for (size_t i = 0; i < t.size();) {
        if (t.compare(i, 2, "{}") == 0) {
            out += classname;
            i += 2;
        } else if (t.compare(i, 3, "{c}") == 0) {
            out += classname;
            i += 3;
        } else {
            out += t[i++];
        }
    }
    return out;
}

std::vector<std::string> parse_templates(const std::string& text, const std::string& origin) {
    std::vector<std::string> out;
    std::istringstream in(text);
    int64_t line_no = 0;
    for (std::string line; std::getline(in, line);) {
        ++line_no;
        const std::string t = trim(line);
        if (t.empty() || t[0] == '#') continue;
        CC_REQUIRE(has_placeholder(t), origin, ":", line_no, ": prompt template '", t,
                   "' has no {} (or {c}) where the class name goes");
        out.push_back(t);
    }
    CC_REQUIRE(!out.empty(), origin, ": no prompt templates (one per line, {} for the class name; '#' starts a comment)");
    return out;
}

std::vector<std::string> resolve_templates(const std::string& spec) {
    for (const auto& n : template_set_names())
        if (spec == n) return builtin_templates(n);
    CC_REQUIRE(std::filesystem::is_regular_file(spec), "--templates '", spec,
               "' is neither a built-in template set (", names_list(), ") nor a template file");
    std::ifstream f(spec, std::ios::binary);
    CC_REQUIRE(f.good(), "--templates: cannot read ", spec);
    std::ostringstream ss;
    ss << f.rdbuf();
    return parse_templates(ss.str(), spec);
}

}  // namespace curaclip
