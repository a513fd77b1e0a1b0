// Durable file replacement: what makes a written file survive a crash, a kill or a
// full disk. Every writer of results (checkpoints, datasets, MoDE side files)
// writes to a temporary name first, then swaps it in with these, so a reader never
// sees half a file.
//
// ERRORS. Every system call here is checked: write(2) (partial writes are
// continued, EINTR retried), fsync(2), close(2) (NFS and some FUSE file systems
// report a full disk only at close), rename(2) and link(2). A failure is a
// curaclip::Error naming the path and the system's reason as strerror(3) words,
// with "(disk full)" added for ENOSPC ("(disk quota full)" for EDQUOT), so that a user sees at once
// what to free.
#pragma once

#include <cstddef>
#include <string>

namespace curaclip::io {

// strerror(err), with " (disk full)" for ENOSPC, " (disk quota full)" for EDQUOT.
std::string describe_errno(int err);

// fsync(2) of a file, or of a directory (which makes a rename in it durable). A file
// that cannot be synced is an error; a directory is not, because some file systems do
// not sync directories.
void fsync_path(const std::string& path, bool directory);

// The directory that holds `path`: "." for a bare name, "/" for a top-level entry.
std::string parent_dir(const std::string& path);

// Writes `size` bytes to a NEW file `path` (mode 0644 less the umask; an existing
// `path` is an error, as with O_EXCL) and fsyncs it. Where the file system allows
// (O_TMPFILE), the bytes go to an unnamed file that is given the name `path` only
// once it is complete and synced: a writer killed midway leaves no file at all. Space is reserved first with fallocate(2) where the file
// system supports it, so a disk too small fails before any byte is written. On any
// failure `path` is removed and nothing else is touched.
void write_new_file(const std::string& path, const void* data, size_t size);

// Writes `text` to `path` through `path`.tmp (write_new_file, then replace_durably
// when `replace`, else publish_new_file: an existing `path` is an error). A failure
// (full disk, no permission) is an Error naming the path and the system's reason;
// `path` is then as it was and no temporary is left. For small results: JSON
// reports, tokenizer files, pointers, config records.
void write_text_file(const std::string& path, const std::string& text, bool replace);

// Replaces `target` by `tmp` atomically (rename(2)) and durably: `tmp` is synced
// before the rename, the directory after it. On failure `tmp` is left where it is
// (the caller owns it).
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
