// `curaclip prep folder DIR`: an ImageNet-style evaluation set, one sub-folder
// per class, read as torchvision's ImageFolder does:
//   * classes = the sub-folders of DIR (symlinks followed), sorted by name
//     (byte order = code point order, as Python's sorted); label = index;
//   * images = files under each class folder, recursively, whose name ends in
//     .jpg .jpeg .png .webp (case-insensitive), in sorted(os.walk(...)) order:
//     by folder path, then by file name;
//   * a class folder without any image is an Error (ImageFolder raises
//     "Found no valid file for the classes ..." too).
// Differences from ImageFolder, on purpose: names starting with '.' (hidden
// folders such as .ipynb_checkpoints, macOS "._x.jpg" files) are ignored, and
// only the four extensions above are images.
//
// classnames(): the folder names, or options.classnames_file (one readable name
// per line, in folder-sorted order; its count must equal the number of class
// folders). Caption of every image = options.caption_template with each "{}"
// replaced by its class name. key = the path relative to DIR ("n01440764/x.JPEG"),
// image_name = the full path; the file is read into image_bytes unless
// captions_only (not found -> missing_image, other errors -> unreadable_image).
// One input unit = options.rows_per_unit images in (class, file) order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "prep/source.h"

namespace curaclip::prep {

class ClassFolderSource final : public Source {
public:
    // Lists every class folder and image once. Errors: DIR missing or not a
    // folder, no class sub-folder, an empty class, a classnames file whose count
    // differs, rows_per_unit < 1.
    ClassFolderSource(std::string folder, const SourceOptions& options);

    std::string kind() const override { return "folder"; }
    std::string describe() const override;
    size_t num_units() const override;
    // "<folder name> files 0-9999" (0-based, inclusive).
    std::string unit_name(size_t u) const override;
    void read_unit(size_t u, const std::function<void(RawSample&&)>& emit, bool captions_only = false) const override;
    std::vector<std::string> classnames() const override { return classnames_; }

    size_t num_files() const { return files_.size(); }

private:
    struct File {
        std::string rel;  // path relative to the folder
        int32_t label;
    };
    std::string folder_;
    std::string name_;
    SourceOptions options_;
    std::vector<std::string> classnames_;
    std::vector<std::string> captions_;  // per class
    std::vector<File> files_;
};

}  // namespace curaclip::prep
