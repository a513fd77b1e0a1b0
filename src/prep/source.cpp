#include "prep/source.h"

#include "core/check.h"
#include "prep/class_folder_source.h"
#include "prep/index_file_source.h"
#include "prep/webdataset_source.h"

namespace curaclip::prep {

const char* reject_reason_name(RejectReason r) {
    switch (r) {
        case RejectReason::missing_image: return "missing_image";
        case RejectReason::unreadable_image: return "unreadable_image";
        case RejectReason::undecodable_image: return "undecodable_image";
        case RejectReason::image_too_large: return "image_too_large";
        case RejectReason::missing_caption: return "missing_caption";
        case RejectReason::empty_caption: return "empty_caption";
        case RejectReason::invalid_utf8: return "invalid_utf8";
        case RejectReason::duplicate_key: return "duplicate_key";
        case RejectReason::bad_label: return "bad_label";
        case RejectReason::bad_record: return "bad_record";
        case RejectReason::truncated_input: return "truncated_input";
    }
    return "unknown";
}

const std::vector<std::string>& source_kinds() {
    static const std::vector<std::string> kinds = {"webdataset", "csv", "tsv", "jsonl", "folder"};
    return kinds;
}

std::unique_ptr<Source> make_source(const std::string& kind, const std::vector<std::string>& inputs,
                                    const SourceOptions& options) {
    if (kind == "webdataset") return std::make_unique<WebDatasetSource>(inputs, options);
    const bool index = kind == "csv" || kind == "tsv" || kind == "jsonl";
    if (index || kind == "folder") {
        const char* what = index ? "one index file" : "one folder (a sub-folder per class)";
        CC_REQUIRE(inputs.size() == 1, "prep ", kind, " takes ", what, ", got ", inputs.size(), " inputs");
        if (kind == "folder") return std::make_unique<ClassFolderSource>(inputs[0], options);
        const IndexFormat f = kind == "csv" ? IndexFormat::csv : kind == "tsv" ? IndexFormat::tsv : IndexFormat::jsonl;
        return std::make_unique<IndexFileSource>(f, inputs[0], options);
    }
    std::string known;
    for (const auto& k : source_kinds()) known += (known.empty() ? "" : ", ") + k;
    CC_USER_FAIL("unknown source kind '", kind, "' (known: ", known, ")");
}

}  // namespace curaclip::prep
