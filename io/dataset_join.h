// One dataset over many shards (docs/data.md §Output layout, MPI, resume): the small top-level file that
// `curaclip prep` writes after every rank has written its shards
// (io/shard_writer.h), so that train, embed, cluster and eval take the shards as
// one dataset.
//
// The row datasets (/images, /tokens, /captions, /keys, and /labels, /image_ids
// where the shards have them) are HDF5 VIRTUAL DATASETS: shard i's rows are rows
// [offset_i, offset_i + n_i) of the joined dataset, read through from the shard
// file by HDF5 itself, so io::DatasetReader and the loader read any row from
// whichever shard holds it without knowing shards exist. Shard paths are stored
// relative to the top-level file's folder (HDF5 looks source files up there), so the
// whole output folder can be moved or copied to another file system.
//
// Besides the virtual datasets the file holds
//   /classnames      strings [K]       (when given)
//   /shards/paths    strings [S]       shard files, relative to this file's folder
//   /shards/inputs   strings [S]       the input each shard was made from (tar, index rows)
//   /shards/rows     int64   [S]       rows of each shard (shards with 0 rows are listed, not mapped)
// and the dataset attributes. HDF5 fills rows of a MISSING source file with zeros
// instead of failing, so io::DatasetReader checks at open that every listed shard
// file exists.
//
// Written like every dataset: to <path>.tmp, then linked into place durably without
// replacing anything (io/durable_file.h); no timestamps, so the same shards give the
// same bytes.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace curaclip::io {

struct JoinShard {
    std::string path;   // relative to the folder of the joined file
    std::string input;  // what it was made from, for `info` and the rejects file
};

struct JoinAttributes {
    std::vector<std::pair<std::string, std::string>> strings;  // on "/", e.g. tokenizer_id, source
    std::vector<std::pair<std::string, int64_t>> integers;     // on "/", e.g. eot_id, rejected
    std::vector<std::string> classnames;                        // empty: no /classnames
};

// Checks that the shards agree (image size, channels, context length, tokenizer
// id, the same optional datasets) and writes the joined file at `path`.
// Returns the total number of rows. Errors name the shard and what differs;
// zero rows in all shards is an Error.
int64_t join_shards(const std::string& path, const std::vector<JoinShard>& shards, const JoinAttributes& attrs);

}  // namespace curaclip::io
