// Durable file replacement: what makes a written file survive a crash or a kill.
// Every writer of results (checkpoints, datasets, MoDE side files) writes to a
// temporary name first, then swaps it in with these, so a reader never sees half a file.
#pragma once

#include <string>

namespace curaclip::io {

// fsync(2) of a file, or of a directory (which makes a rename in it durable). A file
// that cannot be synced is an error; a directory is not, because some file systems do
// not sync directories.
void fsync_path(const std::string& path, bool directory);

// The directory that holds `path`: "." for a bare name, "/" for a top-level entry.
std::string parent_dir(const std::string& path);

// Replaces `target` by `tmp` atomically (rename(2)) and durably: `tmp` is synced
// before the rename, the directory after it.
void replace_durably(const std::string& tmp, const std::string& target);

// Publishes `tmp` as `target` durably WITHOUT ever replacing an existing target:
// tmp is synced, hard-linked to target (link(2) fails instead of replacing; where
// the file system has no hard links, a rename after checking target is absent),
// tmp's name removed, the directory synced. On any error (target exists, sync
// fails) tmp is removed and target is left as it was.
void publish_new_file(const std::string& tmp, const std::string& target);

// mkdir -p. `what` names the option or purpose in errors ("--out"): a path
// component that exists and is not a directory, or cannot be created, is an Error.
void make_directories(const std::string& dir, const std::string& what);

}  // namespace curaclip::io
