// Prompt templates for zero-shot classification (`curaclip eval --templates NAME|FILE`).
//
// A template is a caption with a placeholder for the class name: "{}" (our form)
// or "{c}" (clip_benchmark's `template.format(c=classname)` form); every
// placeholder is replaced (apply_template). The class embedding is the
// renormalized mean of the embeddings of all templates filled with the class
// name (eval/metrics.h zero_shot_classifier), as open_clip and clip_benchmark do.
//
// Built-in sets (template_set_names()):
//   default          five product-photo templates for Fashion-MNIST ("a photo of a {}." ...),
//                    the set eval has always used, so earlier results stay comparable
//   openai_imagenet  OpenAI CLIP's 80 ImageNet templates, in the order of open_clip's
//                    OPENAI_IMAGENET_TEMPLATES (src/open_clip/zero_shot_metadata.py)
//   simple           open_clip's SIMPLE_IMAGENET_TEMPLATES: the 7 templates OpenAI's
//                    Prompt_Engineering_for_ImageNet notebook selected from the 80
#pragma once

#include <string>
#include <vector>

namespace curaclip {

// The names of the built-in sets, in the order above.
std::vector<std::string> template_set_names();

// A built-in set by name; Error (listing the names) for an unknown one.
std::vector<std::string> builtin_templates(const std::string& name);

// Templates from the text of a template file: one template per line, "{}" or
// "{c}" for the class name, each line trimmed of surrounding spaces, tabs and
// CR (a CRLF file reads the same); blank lines and lines starting with '#' are
// ignored. `origin` names the source (the file) in errors. Errors: a line without a placeholder ("<origin>:<line>: ..."), or no
// template at all.
std::vector<std::string> parse_templates(const std::string& text, const std::string& origin);

// --templates: a built-in name, else a file path (read with parse_templates).
// Error when it is neither, listing the built-in names.
std::vector<std::string> resolve_templates(const std::string& spec);

// Whether t holds a class-name placeholder ("{}" or "{c}").
bool has_placeholder(const std::string& t);

// t with every "{}" and "{c}" replaced by classname. Error when t has none.
std::string apply_template(const std::string& t, const std::string& classname);

}  // namespace curaclip
