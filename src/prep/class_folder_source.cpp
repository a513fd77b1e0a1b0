#include "prep/class_folder_source.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "core/check.h"
#include "prep/input_paths.h"

namespace curaclip::prep {
namespace {

namespace fs = std::filesystem;

bool is_image_name(const std::string& name) {
    std::string lower = name;
    for (auto& c : lower)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return lower.ends_with(".jpg") || lower.ends_with(".jpeg") || lower.ends_with(".png") || lower.ends_with(".webp");
}

std::string fill_template(const std::string& tmpl, const std::string& name) {
    std::string out;
    for (size_t i = 0; i < tmpl.size();) {
        if (tmpl.compare(i, 2, "{}") == 0) {
            out += name;
            i += 2;
        } else {
            out += tmpl[i++];
        }
    }
    return out;
}

}  // namespace

ClassFolderSource::ClassFolderSource(std::string folder, const SourceOptions& options)
    : folder_(std::move(folder)), options_(options) {
    CC_REQUIRE(options_.rows_per_unit >= 1, "rows per unit must be >= 1, got ", options_.rows_per_unit);
    std::error_code ec;
    CC_REQUIRE(fs::is_directory(folder_, ec), "folder source: '", folder_, "' is not a folder (",
             ec ? ec.message() : (fs::exists(folder_) ? "a file" : "not found"), ")");
    name_ = fs::path(folder_).lexically_normal().filename().string();
    if (name_.empty()) name_ = fs::path(folder_).lexically_normal().parent_path().filename().string();

    std::vector<std::string> classes;
    for (const auto& entry : fs::directory_iterator(folder_, ec)) {
        const std::string n = entry.path().filename().string();
        if (!n.starts_with(".") && entry.is_directory()) classes.push_back(n);
    }
    CC_REQUIRE(!ec, "cannot list folder '", folder_, "': ", ec.message());
    CC_REQUIRE(!classes.empty(), "folder source: '", folder_,
             "' has no class sub-folders (expected DIR/<class>/<image>, as torchvision's ImageFolder)");
    std::sort(classes.begin(), classes.end());

    std::vector<std::string> empty;
    for (size_t c = 0; c < classes.size(); ++c) {
        // (folder relative to the folder source, file name): sorted(os.walk()) order.
        std::vector<std::pair<std::string, std::string>> found;
        const fs::path class_dir = fs::path(folder_) / classes[c];
        auto it = fs::recursive_directory_iterator(class_dir, fs::directory_options::follow_directory_symlink, ec);
        CC_REQUIRE(!ec, "cannot list folder '", class_dir.string(), "': ", ec.message());
        for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
            CC_REQUIRE(!ec, "cannot list folder '", class_dir.string(), "': ", ec.message());
            const std::string n = it->path().filename().string();
            if (n.starts_with(".")) {
                if (it->is_directory()) it.disable_recursion_pending();
                continue;
            }
            if (!it->is_regular_file() || !is_image_name(n)) continue;
            found.emplace_back(it->path().parent_path().lexically_relative(folder_).generic_string(), n);
        }
        CC_REQUIRE(!ec, "cannot list folder '", class_dir.string(), "': ", ec.message());
        if (found.empty()) empty.push_back(classes[c]);
        std::sort(found.begin(), found.end());
        for (auto& [dir, file] : found) files_.push_back(File{dir + "/" + file, int32_t(c)});
    }
    if (!empty.empty()) {
        std::string names;
        for (size_t i = 0; i < empty.size() && i < 10; ++i) names += (i ? ", " : "") + empty[i];
        if (empty.size() > 10) names += ", ... (" + std::to_string(empty.size()) + " in all)";
        CC_USER_FAIL("folder source: no image (.jpg .jpeg .png .webp) in the class folder", empty.size() == 1 ? "" : "s",
                " ", names, " of '", folder_, "'");
    }

    if (!options_.classnames_file.empty()) {
        classnames_ = read_classnames_file(options_.classnames_file);
        CC_REQUIRE(classnames_.size() == classes.size(), "classnames file '", options_.classnames_file, "' has ",
                 classnames_.size(), " names but '", folder_, "' has ", classes.size(), " class folders");
    } else {
        classnames_ = classes;
    }
    for (const auto& n : classnames_) captions_.push_back(fill_template(options_.caption_template, n));
}

std::string ClassFolderSource::describe() const {
    return "folder: " + folder_ + " (" + std::to_string(classnames_.size()) + " classes, " +
           std::to_string(files_.size()) + " images, captions '" + options_.caption_template + "')";
}

size_t ClassFolderSource::num_units() const {
    return size_t((int64_t(files_.size()) + options_.rows_per_unit - 1) / options_.rows_per_unit);
}

std::string ClassFolderSource::unit_name(size_t u) const {
    CC_REQUIRE(u < num_units(), "unit ", u, " of ", num_units());
    const size_t first = u * size_t(options_.rows_per_unit);
    const size_t last = std::min(files_.size(), first + size_t(options_.rows_per_unit)) - 1;
    return name_ + " files " + std::to_string(first) + "-" + std::to_string(last);
}

void ClassFolderSource::read_unit(size_t u, const std::function<void(RawSample&&)>& emit, bool captions_only) const {
    CC_REQUIRE(u < num_units(), "unit ", u, " of ", num_units());
    const size_t first = u * size_t(options_.rows_per_unit);
    const size_t last = std::min(files_.size(), first + size_t(options_.rows_per_unit));
    for (size_t i = first; i < last; ++i) {
        const File& f = files_[i];
        RawSample s;
        s.key = f.rel;
        s.label = f.label;
        s.caption = captions_[size_t(f.label)];
        s.image_name = (fs::path(folder_) / f.rel).string();
        if (!captions_only) read_image_file(s.image_name, s);
        emit(std::move(s));
    }
}

}  // namespace curaclip::prep
