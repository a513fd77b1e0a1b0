// The input files of `curaclip prep <source>` (src/prep/source.h): expanding the
// tar shard list a user gives, and the small readers every source shares (an
// image file into a RawSample, a label, a --classnames file).
//
// Shard lists follow what webdataset users write (webdataset expands URLs with
// the `braceexpand` package, shells expand globs):
//   * brace ranges  DIR/{00000..00099}.tar: integers from..to (either order, an
//     optional ..step); when an endpoint is written with a leading zero every
//     number is zero-padded to the wider endpoint's width (bash and braceexpand
//     do the same). Lists {a,b,c} and nesting work as in braceexpand. A brace
//     pair that is neither (no comma, no range) stays literal.
//   * globs (* ? [...]) through glob(3); a glob selects only tar files.
//   * a directory: its tar files (not recursive).
//   * anything else is taken as a path, whatever its name.
// "Tar files" here are regular files named *.tar, *.tar.gz or *.tgz: img2dataset
// writes 00000.parquet and 00000_stats.json beside each 00000.tar, and those
// must not become shards. The result is sorted by path and de-duplicated, so
// every rank and every run sees the same unit order.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "prep/source.h"

namespace curaclip::prep {

// Brace expansion of one pattern, in braceexpand's order (left to right, the
// first brace outermost). Error when a range would give more than 10 million
// names (a typo such as {0..99999999999}).
std::vector<std::string> expand_braces(const std::string& pattern);

// True for a name ending in .tar, .tar.gz or .tgz.
bool is_tar_name(std::string_view name);

struct ShardList {
    std::vector<std::string> paths;    // existing shards, sorted by path, unique
    std::vector<std::string> missing;  // paths named literally (after brace expansion) that do not exist
};

// Expands every input (braces, then globs / directories / plain paths). Paths
// are lexically normalized ("./a//b.tar" -> "a/b.tar") before sorting, so the
// same shard reached two ways counts once. Does not throw for missing files.
ShardList expand_shard_inputs(const std::vector<std::string>& inputs);

// Reads a whole image file into sample.image_bytes (sample.image_name = path).
// Not found (ENOENT, ENOTDIR) -> sample.reject = missing_image; any other
// failure (permissions, EISDIR, I/O error) -> unreadable_image; detail says
// strerror and the path.
void read_image_file(const std::string& path, RawSample& sample);

// A class label: an ASCII decimal integer in [0, 2^31), surrounding ASCII
// whitespace ignored ("3\n" is 3). Anything else -> nullopt and `why` says what
// was found.
std::optional<int32_t> parse_label(std::string_view text, std::string* why);

// A --classnames file: one class name per line, in label order; '\r' and
// surrounding whitespace trimmed, blank lines ignored. Error when the file
// cannot be read or names no class.
std::vector<std::string> read_classnames_file(const std::string& path);

}  // namespace curaclip::prep
